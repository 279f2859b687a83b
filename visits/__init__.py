"""Visits: pure rules (``rules``) for checking a rostered visit in and out from fence transitions,
the evidence kept for each, and the alerts raised when a visit is late, missed or cut short.

The store of visits is :mod:`adapters.storage.visit_store`; the service that feeds the rules with
fixes and transitions is :mod:`streams.visit_keeper`.
"""
