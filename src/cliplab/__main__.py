"""``python -m cliplab``: the same as the ``cliplab`` command (so ``torchrun -m cliplab`` works)."""

from cliplab.cli import main

if __name__ == "__main__":
    main()
