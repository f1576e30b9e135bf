"""Streamlit sample for orun's python-streamlit-poetry spec: widgets that change the page,
and a dependency (tomli-w) that only the Poetry project brings."""

import os

import streamlit as st
import tomli_w

st.set_page_config(page_title="orun streamlit poetry sample")
st.title("orun streamlit poetry sample")
st.write(f"served at path: [{os.environ.get('CL_APP_PATH', '')}]")
st.write(f"secret greeting: [{st.secrets.get('greeting', 'none')}]")
st.code(tomli_w.dumps({"from_poetry": True}).strip())
st.write(f"streamlit version: [{st.__version__}]")

if "clicks" not in st.session_state:
    st.session_state.clicks = 0
if st.button("Count"):
    st.session_state.clicks += 1
st.write(f"Clicks: {st.session_state.clicks}")

name = st.text_input("Your name", key="name")
if name:
    st.write(f"Hello, {name}!")
