"""``python -m cliplab`` runs the command line (so ``torchrun -m cliplab train ...`` works)."""

from cliplab.cli import main

if __name__ == "__main__":
    main()
