"""The component contracts, kept importable here (a stable name, see "Stability" in
docs/writing-plugins.md); they live in :mod:`imtrans.core.contracts`."""

from imtrans.core.contracts import *  # noqa: F403
from imtrans.core.contracts import __all__  # noqa: F401
