"""``python -m cliplab``: the same as the ``cliplab`` command."""

from cliplab.cli import main

main()
