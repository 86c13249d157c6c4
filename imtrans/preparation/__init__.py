"""Preparing datasets from files users have: pairing two folders into the aligned layout
(:mod:`~imtrans.preparation.combine`, ``imtrans data combine``)."""
