"""The bottom floor: what every other layer stands on, importing only the standard library,
torch and :mod:`imtrans.errors`.

The registry and the plugin hooks (:mod:`~imtrans.core.registry`,
:mod:`~imtrans.core.hookspecs`), the component contracts (:mod:`~imtrans.core.contracts`),
the device and seeding (:mod:`~imtrans.core.device`), the observer progress goes out through
(:mod:`~imtrans.core.observer`), DDP under torchrun (:mod:`~imtrans.core.distributed`), the
stop signals, and the file helpers: atomic writes, path checks, bounded reads of regular files
and JSON, printable names, the git commit read as files, the TOML writer.
"""
