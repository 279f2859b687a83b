"""A simulated city: caregivers travelling between visits with GPS noise and outages, and homes
whose fall detectors sometimes fire. ``careknot simulate`` runs it (see :mod:`simulators.city`).
"""
