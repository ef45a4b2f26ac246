"""``python -m twin.cli``: the same commands as the ``twin`` script (used for child processes)."""

from twin.cli import main

if __name__ == "__main__":
    main()
