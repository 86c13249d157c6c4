"""``python -m imtrans`` runs the command line (also what ``torchrun -m imtrans`` uses)."""

from imtrans.cli import console_main

if __name__ == "__main__":
    console_main()
