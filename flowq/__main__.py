"""``python -m flowq``: the flowq command line."""

from flowq.cli import main

if __name__ == "__main__":
    main()
