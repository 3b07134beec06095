"""``python -m placement.experiments.suites``: rewrite the shipped suites' instance files."""

from placement.experiments.suites.files import main

if __name__ == "__main__":
    main()
