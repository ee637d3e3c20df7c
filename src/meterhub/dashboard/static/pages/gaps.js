// meterhub Gaps: per channel, the missing intervals and seq jumps over a range, drawn on a
// timeline, with their counts, as /api/v1/gaps answers. The URL holds the choice
// (?device=...&start=...&end=...), so a view can be shared and the back button works.
"use strict";
(function () {
  const {el, api, cell, show, failed, when} = window.meterhub;
  const params = new URLSearchParams(window.location.search);

  function controls(devices) {
    const device = el("select", {id: "device", name: "device"},
      el("option", {value: ""}, "all devices"),
      ...devices.map((d) => el("option", {value: d, selected: d === params.get("device")
                                                   ? "" : null}, d)));
    const field = (id, label, value) => [
      el("label", {for: id}, label),
      el("input", {id, name: id, type: "text", value: value || "",
                   placeholder: "2024-10-27 or 2024-10-27T12:00Z"})];
    return el("form", {class: "controls", method: "get", action: "/gaps"},
      el("label", {for: "device"}, "Device"), device,
      ...field("start", "From", params.get("start")),
      ...field("end", "To", params.get("end")),
      el("button", {type: "submit"}, "Show"));
  }

  // the range drawn: the query's bounds, else the channel's own first and last reading
  function timeline(gaps, from, to) {
    const width = 1000;
    const span = Math.max(to - from, 1);
    const x = (t) => Math.min(width, Math.max(0, ((t - from) / span) * width));
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", `0 0 ${width} 12`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", "timeline");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `${gaps.length} gaps`);
    const bar = document.createElementNS(svg.namespaceURI, "rect");
    Object.entries({x: 0, y: 3, width, height: 6, class: "span"}).forEach(
      ([k, v]) => bar.setAttribute(k, v));
    svg.append(bar);
    for (const gap of gaps) {
      const rect = document.createElementNS(svg.namespaceURI, "rect");
      const left = x(Date.parse(gap.start));
      Object.entries({x: left, y: 0, height: 12, class: gap.kind,
                      width: Math.max(2, x(Date.parse(gap.end)) - left)}).forEach(
        ([k, v]) => rect.setAttribute(k, v));
      const title = document.createElementNS(svg.namespaceURI, "title");
      title.textContent = `${gap.kind}: ${gap.missing} missing, ${gap.start} to ${gap.end}`;
      rect.append(title);
      svg.append(rect);
    }
    return svg;
  }

  function render(channels, gaps) {
    const start = params.get("start"), end = params.get("end");
    const rows = channels.map((ch) => {
      const mine = gaps.filter((g) => g.device === ch.device && g.channel === ch.channel);
      const intervals = mine.filter((g) => g.kind === "interval");
      const jumps = mine.filter((g) => g.kind === "seq");
      const missing = mine.reduce((sum, g) => sum + g.missing, 0);
      const from = Date.parse(ch.first_ts), to = Date.parse(ch.last_ts);
      return el("tr", {"data-channel": `${ch.device}/${ch.channel}`},
        el("th", {scope: "row"}, `${ch.device} / ${ch.channel}`),
        cell("intervals", intervals.length, intervals.length),
        cell("seq", jumps.length, jumps.length),
        cell("missing", missing, missing.toLocaleString()),
        el("td", {class: "wide"}, ...(ch.first_ts ? [timeline(mine, from, to),
          el("div", {class: "ends"}, el("span", {}, when(ch.first_ts)),
             el("span", {}, when(ch.last_ts)))] : ["no readings"])));
    });
    const total = gaps.reduce((sum, g) => sum + g.missing, 0);
    show("Gaps", controls([...new Set(channels.map((c) => c.device))]),
      el("p", {"data-total": "gaps"},
         `${gaps.length} gaps, ${total.toLocaleString()} readings missing`,
         start || end ? ` from ${start || "the first reading"} to ${end || "the last"}` : ""),
      el("div", {class: "table"}, el("table", {id: "gaps"},
        el("thead", {}, el("tr", {}, ...["Channel", "Missing intervals", "Seq jumps",
                                          "Readings missing", "Timeline"].map(
          (h) => el("th", {scope: "col"}, h)))),
        el("tbody", {}, ...rows))));
    document.body.dataset.ready = "true";
  }

  const query = new URLSearchParams();
  for (const name of ["device", "start", "end"]) {
    if (params.get(name)) query.set(name, params.get(name));
  }
  const scope = params.get("device") ? `?device=${encodeURIComponent(params.get("device"))}` : "";
  Promise.all([api("/api/v1/channels" + scope), api("/api/v1/gaps?" + query.toString())])
    .then(([channels, gaps]) => render(channels, gaps))
    .catch((error) => api("/api/v1/channels").then(
      (all) => failed("Gaps", new Error(`Could not show these gaps: ${error.message}`),
                      controls([...new Set(all.map((c) => c.device))])),
      () => failed("Gaps", new Error(`Could not show these gaps: ${error.message}`))));
})();
