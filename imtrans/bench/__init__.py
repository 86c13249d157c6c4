"""Benchmarks: one recipe's training step timed (:mod:`~imtrans.bench.timing`,
``imtrans bench``) and the one-command GPU proof (:mod:`imtrans.bench.suite`,
``imtrans bench --suite gpu``). They sit above training, evaluation and inference, which they
measure."""
