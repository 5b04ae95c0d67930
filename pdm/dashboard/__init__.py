"""The plant-floor dashboard (Streamlit): overview, machine pages, alarms, commissioning, models.

``pdm-edge report`` runs :mod:`~pdm.dashboard.commissioning_run`, :mod:`~pdm.dashboard.whatif`
and :mod:`~pdm.dashboard.report` without Streamlit: what they share with the pages
(:mod:`~pdm.dashboard.alarms`) imports streamlit and pandas inside the functions that draw.
The replay and the spectra analysis (:mod:`pdm.processing`, :mod:`pdm.replay`) are imported
where they run, in the page's child process or the command, not when a page loads.
"""
