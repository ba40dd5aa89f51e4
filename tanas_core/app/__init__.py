"""The Streamlit app's library side: building blocks for the pages (``ui``) and plotly figures (``figures``).
The pages themselves live in ``app_pages/`` and hold no math."""
