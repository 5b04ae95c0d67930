"""The plant-floor dashboard (Streamlit): overview, machine pages, alarms, commissioning, models."""
