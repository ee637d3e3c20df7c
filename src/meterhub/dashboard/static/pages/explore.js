// meterhub Explore: chosen channels over a range, drawn with uPlot from what the API answers
// (/api/v1/channels, /aggregates, /readings, /gaps). The URL holds the whole state:
//   ?ch=source/device/channel (repeat) &range=24h|7d|30d|1y|all|custom &start=&end= (custom)
//   &tz=Area/City &unit.<quantity>=<unit>
// so a view can be shared and the back button works. Presets end at the newest reading of
// the chosen channels (not now), so a store of old data still shows its last day.
"use strict";
(function () {
  const {el, answer, api, show, failed} = window.meterhub;
  const MAX_POINTS = 2000; // at most about this many points a series
  // the bucket sizes the API knows, with their (nominal) length in seconds
  const LADDER = [["15min", 900], ["1h", 3600], ["1d", 86400], ["1w", 604800],
                  ["1mo", 2629746], ["1y", 31556952]];
  const PRESETS = {"24h": ["24 hours", 86400], "7d": ["7 days", 7 * 86400],
                   "30d": ["30 days", 30 * 86400], "1y": ["1 year", 365 * 86400],
                   "all": ["all", null], "custom": ["custom", null]};
  const DEFAULT_RANGE = "7d";
  const FNS = {instant: ["mean", "min", "max"], counter: ["consumption"], delta: ["sum"]};
  const UNITS = {temperature: ["°C", "°F", "K"], air_temperature: ["°C", "°F", "K"],
    energy: ["kWh", "Wh", "MWh", "MJ", "GJ"], power: ["kW", "W", "MW"],
    volume: ["m³", "L", "ft³"], flow: ["m³/h", "L/min"], precipitation: ["mm", "inch"],
    atmospheric_pressure: ["kPa", "hPa", "mbar", "inHg", "psi"],
    vapor_pressure: ["kPa", "hPa"], wind_speed: ["m/s", "km/h", "mph", "knot"],
    solar_radiation: ["W/m²", "kW/m²"], voltage: ["V", "mV", "kV"], current: ["A", "mA"]};
  const COLORS = ["#2857c5", "#d1495b", "#1b7a3a", "#e07b00", "#7b3fb5", "#00798c",
                  "#8c564b", "#555"];
  const BROWSER_TZ = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

  let catalog = [];       // /api/v1/channels
  let controls = null;    // the form's parts, built once
  let chart = null;       // the uPlot drawn
  let drawing = 0;        // a render's number: an older one's answers are dropped

  const keyOf = (c) => [c.source, c.device, c.channel].map(encodeURIComponent).join("/");
  const label = (c) => `${c.device} / ${c.channel}`;

  // -- state <-> URL -----------------------------------------------------------------------
  function readState() {
    const params = new URLSearchParams(window.location.search);
    const units = {};
    for (const [name, value] of params) {
      if (name.startsWith("unit.") && value) units[name.slice(5)] = value;
    }
    // an empty ch= says "none chosen", where no ch at all means "the first channel"
    return {ch: params.getAll("ch").filter(Boolean), given: params.has("ch"),
            range: params.get("range") || DEFAULT_RANGE,
            start: params.get("start") || "", end: params.get("end") || "",
            tz: params.get("tz") || BROWSER_TZ, units};
  }

  function urlOf(state) {
    const params = new URLSearchParams();
    state.ch.forEach((k) => params.append("ch", k));
    if (!state.ch.length) params.set("ch", "");
    params.set("range", state.range);
    if (state.range === "custom") {
      params.set("start", state.start);
      params.set("end", state.end);
    }
    params.set("tz", state.tz);
    for (const [quantity, unit] of Object.entries(state.units).sort()) {
      params.set(`unit.${quantity}`, unit);
    }
    return "/explore?" + params.toString();
  }

  function go(change) {
    const state = Object.assign(readState(), change);
    history.pushState(null, "", urlOf(state));
    render();
  }

  function defaults(state) {
    return state.given || !catalog.length ? state.ch : [keyOf(catalog[0])];
  }

  // -- times -------------------------------------------------------------------------------
  const ms = (iso) => Date.parse(iso);
  const zoned = (text) => /(Z|[+-]\d\d:?\d\d)$/i.test(text);
  // a time the API reads in tz, as an instant; naive ones as if UTC (good for a length)
  function roughMs(text) {
    let t = text.trim().replace(" ", "T");
    if (!t.includes("T")) t += "T00:00";
    return Date.parse(zoned(t) ? t : t + "Z");
  }
  const isoOf = (millis) => new Date(millis).toISOString().replace(".000Z", "Z");

  // "YYYY-MM-DDTHH:MM:SS" of an instant in tz, for the From/To fields
  function naiveIn(millis, tz) {
    const parts = Object.fromEntries(new Intl.DateTimeFormat("en-US", {
      timeZone: tz, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit"}).formatToParts(new Date(millis))
      .map((p) => [p.type, p.value]));
    return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}:${parts.second}`;
  }

  const shown = (millis, tz) => new Date(millis).toLocaleString(undefined, {timeZone: tz});

  // -- the form ----------------------------------------------------------------------------
  function buildControls() {
    const search = el("input", {id: "search", type: "search", autocomplete: "off",
                                placeholder: "device, channel, quantity"});
    const ids = new Map(catalog.map((c, i) => [c, "ch-" + i]));
    const bySource = new Map();
    for (const c of catalog) {
      const devices = bySource.get(c.source) || new Map();
      devices.set(c.device, [...(devices.get(c.device) || []), c]);
      bySource.set(c.source, devices);
    }
    const list = el("div", {class: "channels", id: "channel-list"});
    for (const [source, devices] of bySource) {
      const sourceGroup = el("div", {class: "source", role: "group",
                                     "aria-label": `Source ${source}`},
                             el("div", {class: "source-name"}, source));
      for (const [device, channels] of devices) {
        const items = channels.map((c) => {
          const id = ids.get(c);
          return el("div", {class: "channel", "data-text":
                              [source, device, c.channel, c.quantity].join(" ").toLowerCase()},
            el("input", {type: "checkbox", id, name: "ch", value: keyOf(c), "data-ch": keyOf(c)}),
            el("label", {for: id}, c.channel, " ",
               el("span", {class: "muted"}, `${c.quantity}, ${c.unit}, ${c.kind}`)));
        });
        const group = el("div", {class: "device", role: "group",
                                 "aria-label": `${source} / ${device}`},
                         el("div", {class: "device-name"}, device), ...items);
        sourceGroup.append(group);
      }
      list.append(sourceGroup);
    }
    search.addEventListener("input", () => {
      const words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
      for (const item of list.querySelectorAll(".channel")) {
        item.hidden = !words.every((w) => item.dataset.text.includes(w));
      }
      for (const group of list.querySelectorAll(".device, .source")) {
        group.hidden = !group.querySelector(".channel:not([hidden])");
      }
    });
    list.addEventListener("change", () => go({
      ch: [...list.querySelectorAll("input:checked")].map((i) => i.value), given: true}));

    const range = el("select", {id: "range", name: "range"},
      ...Object.entries(PRESETS).map(([value, [text]]) => el("option", {value}, text)));
    const start = el("input", {id: "start", name: "start", type: "datetime-local", step: "1"});
    const end = el("input", {id: "end", name: "end", type: "datetime-local", step: "1"});
    const zones = new Set(["UTC", ...(Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone")
                                                                : [BROWSER_TZ])]);
    const tz = el("select", {id: "tz", name: "tz"},
      ...[...zones].map((z) => el("option", {value: z}, z)));
    const units = el("div", {class: "units"});
    const apply = el("button", {type: "submit"}, "Apply range");
    const anchor = el("p", {class: "muted", id: "anchor"});
    const form = el("form", {class: "controls", id: "explore-form"},
      el("label", {for: "range"}, "Range"), range,
      el("label", {for: "start"}, "From"), start,
      el("label", {for: "end"}, "To"), end, apply,
      el("label", {for: "tz"}, "Time zone"), tz);
    range.addEventListener("change", () => {
      if (range.value === "custom") {
        start.focus();
      } else {
        go({range: range.value});
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      go({range: "custom", start: start.value, end: end.value});
    });
    tz.addEventListener("change", () => go({tz: tz.value}));
    units.addEventListener("change", (event) => {
      const state = readState();
      const quantity = event.target.dataset.quantity;
      const value = event.target.value.trim();
      const next = Object.assign({}, state.units);
      if (value) next[quantity] = value; else delete next[quantity];
      go({units: next});
    });
    const result = el("div", {id: "result", "aria-live": "polite"});
    show("Explore",
      el("div", {class: "explore"},
        el("section", {class: "picker", "aria-label": "Channels"},
          el("label", {for: "search"}, "Search channels"), search, list),
        el("section", {class: "view"}, form, units, anchor, result)));
    return {search, list, range, start, end, tz, units, anchor, result};
  }

  // the form shows the state (after a load, a change, or the back button)
  function syncControls(state, chosen, span) {
    const c = controls;
    for (const box of c.list.querySelectorAll("input[type=checkbox]")) {
      box.checked = state.ch.includes(box.value);
    }
    c.range.value = PRESETS[state.range] ? state.range : "custom";
    if (![...c.tz.options].some((o) => o.value === state.tz)) {
      c.tz.append(el("option", {value: state.tz}, state.tz));
    }
    c.tz.value = state.tz;
    const field = (text, millis) => {
      if (state.range === "custom" && text && !zoned(text)) return text;
      return Number.isFinite(millis) ? naiveIn(millis, state.tz) : "";
    };
    c.start.value = span ? field(state.start, span.from) : "";
    c.end.value = span ? field(state.end, span.to) : "";
    const quantities = [...new Set(chosen.map((ch) => ch.quantity))].sort();
    c.units.replaceChildren(...quantities.map((q) => {
      const id = `unit-${q}`;
      const stored = chosen.find((ch) => ch.quantity === q).unit;
      return el("span", {class: "unit"},
        el("label", {for: id}, `Unit for ${q.replace(/_/g, " ")}`),
        el("input", {id, type: "text", list: `${id}-list`, size: 7, "data-quantity": q,
                     value: state.units[q] || "", placeholder: stored}),
        el("datalist", {id: `${id}-list`},
           ...(UNITS[q] || [stored]).map((u) => el("option", {value: u}))));
    }));
  }

  // -- what to ask -------------------------------------------------------------------------
  // The range asked: a preset ends at the newest reading chosen; "all" asks no bounds.
  function spanOf(state, chosen) {
    const newest = Math.max(...chosen.map((c) => c.last_ts ? ms(c.last_ts) : -Infinity));
    const oldest = Math.min(...chosen.map((c) => c.first_ts ? ms(c.first_ts) : Infinity));
    if (state.range === "custom") {
      if (!state.start || !state.end) throw new Error("a custom range needs both From and To");
      return {start: state.start, end: state.end, from: roughMs(state.start),
              to: roughMs(state.end)};
    }
    if (!Number.isFinite(newest)) return {start: null, end: null, from: NaN, to: NaN};
    if (state.range === "all") return {start: null, end: null, from: oldest, to: newest + 1};
    const to = newest + 1; // the end is exclusive: keep the newest reading
    const from = to - PRESETS[state.range][1] * 1000;
    return {start: isoOf(from), end: isoOf(to), from, to};
  }

  // smallest bucket that keeps a series under MAX_POINTS; raw readings when every channel
  // is an instant one whose readings in the range (estimated from its count) are fewer
  function bucketFor(span, chosen) {
    const seconds = (span.to - span.from) / 1000;
    if (!(seconds > 0)) return {every: "1d", raw: false};
    const every = (LADDER.find(([, size]) => seconds / size <= MAX_POINTS) ||
                   LADDER[LADDER.length - 1])[0];
    const estimate = (c) => {
      if (!c.first_ts) return 0;
      const first = ms(c.first_ts), last = ms(c.last_ts);
      const overlap = Math.min(span.to, last + 1) - Math.max(span.from, first);
      if (overlap <= 0) return 0;
      return last > first ? c.readings * Math.min(1, overlap / (last - first)) : c.readings;
    };
    const raw = chosen.every((c) => c.kind === "instant" && estimate(c) <= MAX_POINTS);
    return {every, raw};
  }

  function query(c, state, span, extra) {
    const q = new URLSearchParams({source: c.source, device: c.device, channel: c.channel});
    if (span.start) q.set("start", span.start);
    if (span.end) q.set("end", span.end);
    q.set("tz", state.tz);
    if (state.units[c.quantity]) q.set("unit", state.units[c.quantity]);
    for (const [name, value] of Object.entries(extra)) {
      (Array.isArray(value) ? value : [value]).forEach((v) => q.append(name, v));
    }
    return q;
  }

  async function fetchRaw(c, state, span) {
    const [page, gaps] = await Promise.all([
      answer("/api/v1/readings?" + query(c, state, span, {limit: MAX_POINTS})),
      api("/api/v1/gaps?" + query(c, {tz: state.tz, units: {}}, span, {}))]);
    if (page.next) return null; // more than MAX_POINTS after all: buckets then
    const points = page.data.map((r) => ({x: ms(r.ts) / 1000, y: r.value,
                                          error: r.quality === "sensor_error", unit: r.unit}));
    const holes = gaps.filter((g) => g.kind === "interval")
      .map((g) => [ms(g.start) / 1000, ms(g.end) / 1000]);
    return {c, points, holes, unit: page.data.length ? page.data[0].unit : null};
  }

  async function fetchBuckets(c, state, span, every) {
    const rows = await api("/api/v1/aggregates?" + query(c, state, span, {
      every, fn: [...FNS[c.kind], "errors"]}).toString());
    const fn = FNS[c.kind][0];
    const points = [], holes = [];
    let before = null;
    for (const r of rows) {
      const x = ms(r.bucket) / 1000;
      // a bucket with no reading at all is a gap: a break, never a zero
      if (before !== null && before < x) holes.push([before, x]);
      points.push({x, y: r[fn], lo: r.min, hi: r.max, error: r.errors > 0,
                   errors: r.errors});
      before = ms(r.bucket_end) / 1000;
    }
    return {c, points, holes, unit: rows.length ? rows[0].unit : null};
  }

  // -- drawing -----------------------------------------------------------------------------
  // One x for all series; a series' value is undefined where it has no point (uPlot skips
  // those), null where a gap or a sensor error breaks its line.
  function join(series) {
    series = layered(series);
    const xs = new Set();
    for (const s of series) {
      s.points.forEach((p) => xs.add(p.x));
      s.holes.forEach(([start]) => xs.add(start));
    }
    const x = [...xs].sort((a, b) => a - b);
    const at = new Map(x.map((v, i) => [v, i]));
    const columns = [x];
    for (const s of series) {
      const empty = () => new Array(x.length).fill(undefined);
      const y = empty(), lo = empty(), hi = empty();
      s.holes.forEach(([start]) => { y[at.get(start)] = lo[at.get(start)] = hi[at.get(start)] = null; });
      for (const p of s.points) {
        y[at.get(p.x)] = p.y;
        lo[at.get(p.x)] = p.lo === undefined ? null : p.lo;
        hi[at.get(p.x)] = p.hi === undefined ? null : p.hi;
      }
      s.columns = s.band ? [y, lo, hi] : [y];
      columns.push(...s.columns);
    }
    return columns;
  }

  // bars first, so that lines are drawn over them
  const layered = (series) => [...series].sort((a, b) => b.bars - a.bars);

  function draw(box, series, state, data) {
    const quantities = [...new Set(series.map((s) => s.c.quantity))];
    const axes = [{}];
    const scales = {x: {time: true}};
    quantities.forEach((q, i) => {
      const s = series.find((one) => one.c.quantity === q);
      const bars = series.some((one) => one.c.quantity === q && one.bars);
      scales[q] = bars ? {range: barRange} : {};
      axes.push({scale: q, side: i % 2 ? 1 : 3, grid: {show: i === 0},
                 label: `${q.replace(/_/g, " ")} (${s.unit || s.c.unit})`, size: 56});
    });
    const uSeries = [{}];
    const bands = [];
    const barPaths = uPlot.paths.bars({size: [0.9, Infinity], align: 1});
    layered(series).forEach((s) => {
      const color = COLORS[series.indexOf(s) % COLORS.length];
      const base = uSeries.length;
      uSeries.push({label: label(s.c), scale: s.c.quantity, stroke: color, width: 1.5,
                    spanGaps: false,
                    ...(s.bars ? {paths: barPaths, fill: color + "55", points: {show: false}}
                               : {})});
      if (s.band) {
        uSeries.push({label: label(s.c) + " min", scale: s.c.quantity, stroke: color + "44",
                      width: 0.5, points: {show: false}},
                     {label: label(s.c) + " max", scale: s.c.quantity, stroke: color + "44",
                      width: 0.5, points: {show: false}});
        bands.push({series: [base + 2, base + 1], fill: color + "22"});
      }
    });
    const marks = (u) => overlay(u, series);
    const opts = {width: Math.max(box.clientWidth, 200), height: heightFor(), scales, axes,
      series: uSeries, bands, legend: {show: false},
      tzDate: (t) => uPlot.tzDate(new Date(t * 1000), state.tz),
      cursor: {drag: {x: true, y: false, setScale: false}},
      hooks: {draw: [marks], setSelect: [(u) => zoomTo(u)]}};
    if (chart) chart.destroy();
    chart = new uPlot(opts, data, box);
    box.uplot = chart; // what is drawn, for a test or the console to read
  }

  // bars stand on zero
  function barRange(u, lo, hi) {
    const bottom = Math.min(lo ?? 0, 0), top = Math.max(hi ?? 0, 0);
    return top > bottom ? [bottom, top + (top - bottom) * 0.05] : [0, 1];
  }

  const heightFor = () => (window.innerWidth < 600 ? 260 : 380);

  // gaps shaded, sensor errors marked under the plot: visible as such, never as zeros
  function overlay(u, series) {
    const ctx = u.ctx, {left, top, width, height} = u.bbox;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    const px = (x) => u.valToPos(x, "x", true);
    series.forEach((s, i) => {
      ctx.fillStyle = "rgba(91, 100, 120, 0.14)";
      for (const [a, b] of s.holes) ctx.fillRect(px(a), top, Math.max(px(b) - px(a), 2), height);
      ctx.fillStyle = "#a4161a";
      const y = top + height - 2 - (i % 4) * 7 * devicePixelRatio;
      for (const p of s.points) {
        if (!p.error) continue;
        const x = px(p.x), r = 4 * devicePixelRatio;
        ctx.beginPath();
        ctx.moveTo(x, y - 2 * r);
        ctx.lineTo(x - r, y);
        ctx.lineTo(x + r, y);
        ctx.closePath();
        ctx.fill();
      }
    });
    ctx.restore();
  }

  function zoomTo(u) {
    if (u.select.width < 4) return;
    const a = u.posToVal(u.select.left, "x"), b = u.posToVal(u.select.left + u.select.width, "x");
    u.setSelect({left: 0, top: 0, width: 0, height: 0}, false);
    if (b - a < 60) return; // under a minute: nothing finer to fetch
    go({range: "custom", start: isoOf(Math.floor(a) * 1000), end: isoOf(Math.ceil(b) * 1000)});
  }

  // -- the table of what is drawn: the numbers the tests compare with the API ---------------
  const number = (v) => (v === null || v === undefined ? "" : Number(v).toLocaleString(
    undefined, {maximumFractionDigits: 3}));

  function exportLinks(q, name) {
    const base = "/api/v1/readings?";
    return ["csv", "parquet"].map((format) => {
      const params = new URLSearchParams(q);
      params.set("limit", "5000000");
      params.set("format", format);
      return el("a", {href: base + params.toString(), download: `${name}.${format}`,
                      class: "export", "data-format": format}, format === "csv" ? "CSV" : "Parquet");
    });
  }

  function table(series, state, span) {
    const rows = series.map((s) => {
      const values = s.points.filter((p) => p.y !== null && p.y !== undefined);
      const errors = s.points.reduce((n, p) => n + (p.errors !== undefined ? p.errors
                                                                            : p.error ? 1 : 0), 0);
      const first = values.length ? values[0].y : null;
      const last = values.length ? values[values.length - 1].y : null;
      const what = s.raw ? "readings" : s.bars ? `${FNS[s.c.kind][0]} per bucket`
        : "mean, min–max band";
      const cell = (field, value, text) => el("td", {"data-field": field,
        "data-value": value === null ? "" : String(value)}, text);
      return el("tr", {"data-series": keyOf(s.c)},
        el("th", {scope: "row"}, label(s.c), el("div", {class: "muted"}, s.c.source)),
        el("td", {}, what),
        cell("unit", s.unit || s.c.unit, s.unit || s.c.unit),
        cell("points", values.length, values.length.toLocaleString()),
        cell("first", first, number(first)),
        cell("last", last, number(last)),
        cell("errors", errors, errors === 1 ? "1 sensor error"
          : errors ? `${errors.toLocaleString()} sensor errors` : "none"),
        cell("gaps", s.holes.length, s.holes.length === 1 ? "1 gap"
          : s.holes.length ? `${s.holes.length} gaps` : "none"),
        el("td", {}, ...exportLinks(query(s.c, state, span, {}), `${s.c.device}-${s.c.channel}`)));
    });
    return el("div", {class: "table"}, el("table", {id: "series"},
      el("thead", {}, el("tr", {}, ...["Channel", "Drawn", "Unit", "Points", "First", "Last",
                                       "Sensor errors", "Gaps", "Export"].map(
        (h) => el("th", {scope: "col"}, h)))),
      el("tbody", {}, ...rows)));
  }

  // one download for the whole selection, when one query names exactly it
  function selectionExport(chosen, state, span) {
    const sources = new Set(chosen.map((c) => c.source));
    const devices = new Set(chosen.map((c) => c.device));
    const names = new Set(chosen.map((c) => c.channel));
    const matched = catalog.filter((c) => sources.has(c.source) && devices.has(c.device) &&
                                          names.has(c.channel));
    const quantities = new Set(chosen.map((c) => c.quantity));
    const converted = chosen.some((c) => state.units[c.quantity]);
    if (matched.length !== chosen.length) {
      return el("p", {class: "muted"}, "Export each channel from the table: one download " +
                "of these devices and channels would hold others too.");
    }
    if (converted && quantities.size > 1) {
      return el("p", {class: "muted"}, "Export each channel from the table: one download " +
                "cannot convert units of several quantities.");
    }
    const q = new URLSearchParams();
    sources.forEach((s) => q.append("source", s));
    devices.forEach((d) => q.append("device", d));
    names.forEach((n) => q.append("channel", n));
    if (span.start) q.set("start", span.start);
    if (span.end) q.set("end", span.end);
    q.set("tz", state.tz);
    if (converted) q.set("unit", state.units[chosen[0].quantity]);
    return el("p", {class: "exports"}, "Export the selection's readings: ",
              ...exportLinks(q, "meterhub-readings"));
  }

  // -- a render: read the URL, ask the API, draw -------------------------------------------
  function problem(message) {
    if (chart) { chart.destroy(); chart = null; }
    controls.result.replaceChildren(el("p", {role: "alert"}, message));
    document.body.dataset.ready = "error";
  }

  async function render() {
    const mine = ++drawing;
    document.body.dataset.ready = "false";
    const state = readState();
    state.ch = defaults(state);
    const known = new Map(catalog.map((c) => [keyOf(c), c]));
    const unknown = state.ch.filter((k) => !known.has(k));
    const chosen = state.ch.filter((k) => known.has(k)).map((k) => known.get(k));
    let span = null;
    try {
      if (unknown.length) {
        // a key as sent; one that is no valid escape (?ch=%) is said as it stands
        const shown = (k) => { try { return decodeURIComponent(k); } catch (e) { return k; } };
        throw new Error(`no such channel: ${unknown.map(shown).join(", ")}` +
                        " (pick channels from the list)");
      }
      if (!PRESETS[state.range]) {
        throw new Error(`unknown range "${state.range}": use 24h, 7d, 30d, 1y, all or custom`);
      }
      try {
        naiveIn(0, state.tz);
      } catch (e) {
        throw new Error(`unknown time zone "${state.tz}": use an IANA name such as ` +
                        "Europe/Amsterdam or UTC");
      }
      span = spanOf(state, chosen);
    } catch (error) {
      syncControls(state, chosen, null);
      return problem(`Could not show this: ${error.message}`);
    }
    syncControls(state, chosen, span);
    controls.anchor.textContent = !chosen.length ? "" : state.range === "custom"
      ? `From ${controls.start.value.replace("T", " ")} to ${controls.end.value.replace("T", " ")} (${state.tz})`
      : state.range === "all" ? "All readings of the chosen channels"
      : `The last ${PRESETS[state.range][0]} of data, up to the newest reading ` +
        `(${shown(span.to - 1, state.tz)})`;
    if (!chosen.length) {
      controls.result.replaceChildren(el("p", {}, catalog.length
        ? "Pick one or more channels to draw them." : "No channels yet: nothing to draw."));
      if (chart) { chart.destroy(); chart = null; }
      document.body.dataset.ready = "true";
      return;
    }
    let pick = bucketFor(span, chosen);
    let series;
    try {
      if (pick.raw) {
        series = await Promise.all(chosen.map((c) => fetchRaw(c, state, span)));
        if (series.some((s) => s === null)) pick = {every: pick.every, raw: false};
      }
      if (!pick.raw) {
        series = await Promise.all(chosen.map((c) => fetchBuckets(c, state, span, pick.every)));
      }
    } catch (error) {
      if (mine === drawing) problem(`Could not show this: ${error.message}`);
      return;
    }
    if (mine !== drawing) return; // a newer render took over
    for (const s of series) {
      s.raw = pick.raw;
      s.bars = !pick.raw && s.c.kind !== "instant";
      s.band = !pick.raw && s.c.kind === "instant";
    }
    const data = join(series);
    const total = series.reduce((n, s) => n + s.points.length, 0);
    const box = el("div", {class: "chart", id: "chart", role: "img",
      "data-bucket": pick.raw ? "raw" : pick.every, "data-start": span.start || "",
      "data-end": span.end || "", "data-tz": state.tz, "aria-label":
        `Chart of ${series.map((s) => label(s.c)).join(", ")}: ` +
        (pick.raw ? "raw readings" : `buckets of ${pick.every}`)});
    controls.result.replaceChildren(
      el("p", {id: "bucket"}, pick.raw ? "Raw readings" : `Buckets of ${pick.every}`,
         total ? ". Drag over the chart to zoom in; shaded: gaps; red marks: sensor errors."
               : ": no readings in this range."),
      box, table(series, state, span), selectionExport(chosen, state, span));
    draw(box, series, state, data);
    document.body.dataset.ready = "true";
  }

  window.addEventListener("popstate", () => render());
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      const box = document.getElementById("chart");
      if (chart && box) chart.setSize({width: Math.max(box.clientWidth, 200), height: heightFor()});
    }, 100);
  });

  api("/api/v1/channels")
    .then((channels) => {
      catalog = channels;
      controls = buildControls();
      const state = readState();
      state.ch = defaults(state);
      history.replaceState(null, "", urlOf(state)); // the URL names the whole state
      return render();
    })
    .catch((error) => failed("Explore", new Error(`Could not load the channels: ${error.message}`)));
})();
