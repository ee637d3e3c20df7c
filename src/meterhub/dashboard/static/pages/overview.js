// meterhub Overview: every source's health, the MQTT link's, and every device's newest
// reading, as the API answers them (/api/v1/sources, /api/v1/mqtt and /api/v1/channels;
// the session cookie reads them).
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

  // the MQTT links (none without [mqtt] in meterhub.toml): up or down, and what they did
  function mqtt(links) {
    if (!links.length) return [];
    return [
      el("h2", {}, "MQTT"),
      el("div", {class: "table"}, el("table", {id: "mqtt"},
        el("thead", {}, el("tr", {},
          ...["Client id", "Broker", "Link", "Since", "Published", "Taken", "Rejected",
              "Last error"].map((h) => el("th", {scope: "col"}, h)))),
        el("tbody", {}, ...links.map((l) => el("tr",
          {"data-link": l.client_id, class: l.connected && !l.silent ? null : "stale"},
          el("th", {scope: "row"}, l.client_id),
          cell("broker", l.broker, l.broker),
          cell("connected", l.connected, l.silent ? `no word since ${when(l.as_of)}`
            : (l.connected ? "connected" : "down")),
          cell("since", l.since, when(l.since)),
          cell("published", l.published, l.published.toLocaleString()),
          cell("taken", l.taken, l.taken.toLocaleString()),
          cell("rejected", l.rejected, l.rejected.toLocaleString()),
          cell("last_error", l.last_error, l.connected ? "" : (l.last_error || ""),
               {class: "error"}))))))];
  }

  function render(sources, channels, links) {
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
      ...mqtt(links),
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

  Promise.all([api("/api/v1/sources"), api("/api/v1/channels"), api("/api/v1/mqtt")])
    .then(([sources, channels, links]) => render(sources, channels, links))
    .catch((error) => failed("Overview", new Error(`Could not load the overview: ${error.message}`)));
})();
