#!/usr/bin/env python3
"""Reference-free evaluation of separation systems on REAL-M (WER, DNSMOS, blind SI-SNR estimate).

Run from the repository root (or from this folder)::

    python recipes/REALM/evaluate/evaluate.py --manifest <save>/realm_test.csv --data_folder <REAL-M root> \\
        --system <name>=<trained run or export folder> --system reference --dnsmos --output_folder <folder>

Everything is in ``modules.evaluation.realm`` (``python -m modules.evaluation.realm`` is the same command).
"""

import sys

from modules.evaluation.realm import main

if __name__ == "__main__":
    sys.exit(main())
