"""TA-NAS Studio's entry point (``streamlit run app.py``): the navigation, Home first, then one page per stage.

``st.navigation`` names the pages (the home page is "Home", not the script's file name) and shows the menu before
any page has imported the library, so a first visit sees the app at once.
"""
from __future__ import annotations

import streamlit as st

PAGES = [st.Page("app_pages/0_Home.py", title="Home", icon=":material/home:", default=True),
         st.Page("app_pages/1_Tasks.py", title="Tasks", icon=":material/extension:"),
         st.Page("app_pages/2_Zoo.py", title="Zoo", icon=":material/hub:"),
         st.Page("app_pages/3_Distances.py", title="Distances", icon=":material/grid_on:"),
         st.Page("app_pages/4_Search.py", title="Search", icon=":material/search:"),
         st.Page("app_pages/5_Lesson.py", title="Lesson", icon=":material/school:")]

st.navigation(PAGES).run()
