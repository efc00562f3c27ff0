"""Pneumothorax triage core: radiograph I/O, eligibility, networks, model packages, cascade, SEG.

The core is pure where it can be: arrays and dataclasses in and out. It imports neither
``service`` nor ``training``, opens no sockets and no database.
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

#: Written into Manufacturer of every object we produce; eligibility skips such objects.
MANUFACTURER = "ptx-triage"
