// meterhub Overview: every source's health and every device's newest reading, as the
// API answers them (/api/v1/sources and /api/v1/channels; the session cookie reads them).
"use strict";
(function () {
  const {el, api, when, ago, cell, show, failed} = window.meterhub;

  // fresh only when there is something to judge by: readings, and their interval
  function badge(source) {
    if (source.stale) return "STALE";
    if (source.newest_reading === null) return "no readings";
    return source.interval_seconds === null ? "one reading" : "fresh";
  }

  // what the vendor last told of its limits: calls left of the window's, or a lock-out
  function quota(q) {
    if (!q) return "";
    if (q.wait_until) {  // a 429's lock-out: over by now, or not
      return Date.parse(q.wait_until) > Date.now() ? `none until ${when(q.wait_until)}`
        : `calls allowed again since ${when(q.wait_until)}`;
    }
    if (q.calls_left === null) return "";
    const of = q.calls_limit === null ? "" : ` of ${q.calls_limit}`;
    const per = q.window_seconds === null ? "" : ` per ${q.window_seconds} s`;
    return `${q.calls_left}${of}${per}`;
  }

  function render(sources, channels) {
    const devices = new Map();
    for (const ch of channels) {
      const key = ch.source + "\u0000" + ch.device;
      const held = devices.get(key) || {source: ch.source, device: ch.device, channels: 0,
                                        newest: null, readings: 0};
      held.channels += 1;
      held.readings += ch.readings;
      if (ch.last_ts && (!held.newest || ch.last_ts > held.newest)) held.newest = ch.last_ts;
      devices.set(key, held);
    }
    const readings = channels.reduce((sum, ch) => sum + ch.readings, 0);
    const stale = sources.filter((s) => s.stale).length;
    show("Overview",
      el("div", {class: "totals", "aria-label": "Totals"},
        el("div", {"data-total": "sources"}, el("b", {}, sources.length), "sources"),
        el("div", {"data-total": "stale"}, el("b", {}, stale), "stale or failing"),
        el("div", {"data-total": "devices"}, el("b", {}, devices.size), "devices"),
        el("div", {"data-total": "channels"}, el("b", {}, channels.length), "channels"),
        el("div", {"data-total": "readings"}, el("b", {}, readings.toLocaleString()),
           "readings")),
      el("h2", {}, "Sources"),
      el("div", {class: "table"}, el("table", {id: "sources"},
        el("thead", {}, el("tr", {},
          ...["Source", "Type", "Health", "Newest reading", "Lag", "Interval",
              "Last success", "Calls left", "Devices", "Last error"].map((h) => el("th", {scope: "col"}, h)))),
        el("tbody", {}, ...sources.map((s) => el("tr",
          {"data-source": s.name, class: s.stale ? "stale" : null},
          el("th", {scope: "row"}, s.name, " ",
             el("span", {class: s.stale ? "badge stale" : "badge ok", "data-field": "stale",
                         "data-value": String(s.stale)}, badge(s))),
          cell("type", s.type, s.type || "push"),
          cell("health", s.health, s.health),
          cell("newest_reading", s.newest_reading, when(s.newest_reading)),
          cell("lag_seconds", s.lag_seconds, ago(s.lag_seconds)),
          cell("interval_seconds", s.interval_seconds,
               s.interval_seconds === null ? "" : `${s.interval_seconds} s`),
          cell("last_success", s.last_success, when(s.last_success)),
          cell("calls_left", s.quota ? s.quota.calls_left : null, quota(s.quota),
               s.quota ? {title: `as the vendor said at ${when(s.quota.as_of)}`} : null),
          cell("devices", s.devices, s.devices),
          cell("last_error", s.last_error, s.last_error || "", {class: "error"})))))),
      el("h2", {}, "Devices"),
      el("div", {class: "table"}, el("table", {id: "devices"},
        el("thead", {}, el("tr", {},
          ...["Device", "Source", "Channels", "Readings", "Newest reading"].map(
            (h) => el("th", {scope: "col"}, h)))),
        el("tbody", {}, ...[...devices.values()].map((d) => el("tr",
          {"data-device": d.device, "data-device-source": d.source},
          el("th", {scope: "row"}, d.device),
          cell("source", d.source, d.source),
          cell("channels", d.channels, d.channels),
          cell("readings", d.readings, d.readings.toLocaleString()),
          cell("newest", d.newest, when(d.newest))))))));
    document.body.dataset.ready = "true";
  }

  Promise.all([api("/api/v1/sources"), api("/api/v1/channels")])
    .then(([sources, channels]) => render(sources, channels))
    .catch((error) => failed("Overview", new Error(`Could not load the overview: ${error.message}`)));
})();
