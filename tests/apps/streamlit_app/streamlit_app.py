"""Streamlit sample for orun's python-streamlit spec: widgets that change the page."""

import os

import streamlit as st

st.set_page_config(page_title="orun streamlit sample")
st.title("orun streamlit sample")
st.write(f"served at path: [{os.environ.get('CL_APP_PATH', '')}]")
st.write(f"secret greeting: [{st.secrets.get('greeting', 'none')}]")

if "clicks" not in st.session_state:
    st.session_state.clicks = 0
if st.button("Count"):
    st.session_state.clicks += 1
st.write(f"Clicks: {st.session_state.clicks}")

name = st.text_input("Your name", key="name")
if name:
    st.write(f"Hello, {name}!")
