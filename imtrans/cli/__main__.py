"""``python -m imtrans.cli`` runs the command line, as ``python -m imtrans`` does."""

from imtrans.cli.app import console_main

if __name__ == "__main__":
    console_main()
