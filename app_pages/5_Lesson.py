"""Lesson: the method on the demo's own results, one step per screen (formula, picture, one sentence), every picture
downloadable as PNG and SVG for slides. The steps are built by ``tanas_core.app.lesson``; this page only shows them."""
from __future__ import annotations

import streamlit as st

from tanas_core.app import ui
from tanas_core.app.lesson import figure_bytes, lesson_steps
from tanas_core.jobs.runner import list_jobs
from tanas_core.requests import DemoRequest

space = ui.page_header("Lesson: how similar are two learning tasks?",
                       "The method step by step on the demo's own results (Home → Run the demo).")

demos = [job for job in list_jobs(space, "demo", 20) if job.status == "done"]
if not demos:
    st.info("The lesson reads the demo's results: run the demo on Home first (a few minutes), then come back.")
    st.stop()
request = DemoRequest.from_dict(demos[0].request)
run_id = (demos[0].result or {}).get("run_id")


@st.cache_resource(show_spinner="Drawing the lesson's figures...", max_entries=4)
def steps_of(root: str, job_id: str):
    """The lesson of one finished demo with each figure as PNG and SVG bytes (drawn once per demo and server)."""
    steps = lesson_steps(space, request, run_id)
    return steps, [None if step.figure is None else (figure_bytes(step.figure, "png"), figure_bytes(step.figure, "svg"))
                   for step in steps]


steps, pictures = steps_of(str(space.root), demos[0].id)
titles = [step.title for step in steps]
if st.session_state.get("lesson_step") not in titles:  # a new session: the step in the URL, else the first
    st.session_state["lesson_step"] = ui.restored("lesson", "step", titles[0])
    if st.session_state["lesson_step"] not in titles:
        st.session_state["lesson_step"] = titles[0]
index = titles.index(st.radio("Step", titles, horizontal=True, key="lesson_step", label_visibility="collapsed"))
ui.remember(step=titles[index])
step = steps[index]
st.header(step.title)
st.latex(step.formula)
st.markdown(step.sentence)
if pictures[index] is not None:
    png, svg = pictures[index]
    st.image(png)
    name = f"lesson-{index + 1}"
    left, right, _ = st.columns([1, 1, 4])
    left.download_button("Download PNG", png, file_name=f"{name}.png", mime="image/png", key=f"png-{index}")
    right.download_button("Download SVG", svg, file_name=f"{name}.svg", mime="image/svg+xml", key=f"svg-{index}")


def go(offset: int) -> None:
    st.session_state["lesson_step"] = titles[index + offset]


previous, following, _ = st.columns([1, 1, 4])
previous.button("← Previous step", disabled=index == 0, on_click=go, args=(-1,))
following.button("Next step →", disabled=index == len(steps) - 1, on_click=go, args=(1,))
