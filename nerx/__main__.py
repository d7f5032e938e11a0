"""``python -m nerx``: the command line, also the module that ``torchrun -m nerx`` runs."""

from nerx.cli import main

if __name__ == "__main__":
    main()
