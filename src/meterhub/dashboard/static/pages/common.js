// What every dashboard page shares: building DOM from text (never HTML strings, so no
// name or error text can inject markup), reading the API with the session cookie, and
// showing times and errors.
"use strict";
window.meterhub = (function () {
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(name, value);
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // GET an API path; the session cookie goes along. Its whole JSON answer (DSMR-reader's
  // are bare; meterhub's hold data and next), or an Error saying what the API said (its
  // problem detail), so a page can show it in words.
  async function answer(path) {
    const response = await fetch(path, {headers: {"Accept": "application/json"}});
    if (response.status === 401) {
      const here = window.location.pathname + window.location.search;
      window.location.assign("/login?next=" + encodeURIComponent(here));
      throw new Error("the session has ended: log in again");
    }
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
      throw new Error(detail);
    }
    return response.json();
  }

  // the data of meterhub's answer
  async function api(path) {
    return (await answer(path)).data;
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "never";
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "no readings";
    for (const [size, unit] of [[86400, "d"], [3600, "h"], [60, "min"]]) {
      if (seconds >= size) return `${Math.floor(seconds / size)} ${unit} ago`;
    }
    return `${seconds} s ago`;
  }

  // a table cell that carries the API's value as data (what tests compare) and shows text
  function cell(field, value, text, extra) {
    return el("td", Object.assign({"data-field": field,
      "data-value": value === null || value === undefined ? "" : String(value)}, extra || {}),
      text);
  }

  // the page's main area: its title, then the content or the error in words
  function show(title, ...content) {
    document.querySelector("main").replaceChildren(el("h1", {}, title), ...content);
  }

  function failed(title, error, ...before) {
    show(title, ...before, el("p", {role: "alert"}, error.message));
    document.body.dataset.ready = "error";
  }

  return {el, answer, api, when, ago, cell, show, failed};
})();
