"""A simulated city: caregivers travelling between visits with GPS noise and outages, and homes
whose fall detectors sometimes fire. ``careknot simulate`` runs it (:mod:`simulators.simulate`):
the layout is :mod:`simulators.population`'s, the moving city :mod:`simulators.city`'s.
"""
