// meterhub Energy: the DSMR meter's live power, a day's totals and costs, hourly bars for
// the day and the day before, daily bars for its month and monthly bars for its year, as
// /api/v1/energy answers them (DSMR-reader's rules, the numbers of its v2 statistics), and
// the consumption of any other energy or volume meter (/api/v1/aggregates). The URL holds
// the choice (?day=2024-10-27, default today in the meter's zone; ?refresh=seconds), so a
// view can be shared; numbers the tests compare sit in data-value attributes.
"use strict";
(function () {
  const {el, answer, api, cell, show, failed} = window.meterhub;
  const params = new URLSearchParams(window.location.search);
  const TITLE = "Energy";
  const charts = [];

  // the live refresh period: 5 s, or the URL's, bounded so no URL can flood the server
  function period() {
    const text = params.get("refresh");
    if (text === null || text === "") return 5;
    const seconds = Number(text);
    if (!Number.isFinite(seconds) || seconds < 1 || seconds > 3600) {
      throw new Error(`refresh must be a number of seconds from 1 to 3600, not "${text}"`);
    }
    return seconds;
  }

  // sums of decimal strings with `places` decimals, exact (in whole units of the last place)
  function add(places, ...values) {
    const scale = 10 ** places;
    const sum = values.reduce((total, v) => total + Math.round(Number(v) * scale), 0);
    return (sum / scale).toFixed(places);
  }
  const kwh = (...v) => add(3, ...v);

  // dates as YYYY-MM-DD strings, counted in UTC so no browser zone shifts them
  function shift(day, days) {
    const d = new Date(day + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + days);
    return d.toISOString().slice(0, 10);
  }
  function nextMonth(month) {  // "2024-10" -> "2024-11"
    const [y, m] = month.split("-").map(Number);
    return m === 12 ? `${y + 1}-01` : `${y}-${String(m + 1).padStart(2, "0")}`;
  }
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                  "Nov", "Dec"];
  const longDay = (day) => new Date(day + "T12:00:00Z").toLocaleDateString(undefined,
    {weekday: "long", day: "numeric", month: "long", year: "numeric", timeZone: "UTC"});

  function controls(day) {
    const keep = params.get("refresh") ? [el("input", {type: "hidden", name: "refresh",
                                                       value: params.get("refresh")})] : [];
    const link = (text, to) => el("a", {href: `/energy?${new URLSearchParams(
      Object.assign({day: to}, params.get("refresh") ? {refresh: params.get("refresh")} : {}))}`},
      text);
    return el("form", {class: "controls", method: "get", action: "/energy"},
      el("label", {for: "day"}, "Day"),
      el("input", {id: "day", name: "day", type: "date", value: day || params.get("day") || ""}),
      ...keep, el("button", {type: "submit"}, "Show"),
      ...(day ? [link("Previous day", shift(day, -1)), link("Next day", shift(day, 1)),
                 el("a", {href: "/energy"}, "Today")] : []));
  }

  function card(name, value, text, label) {
    return el("div", {"data-total": name, "data-value": value === null ? "" : value},
      el("b", {}, text), label);
  }

  // a bar chart (uPlot) of `bars` ({label, values: {series: number}}) and its numbers as a
  // table, for screen readers and for the tests: one row a bar
  function barView(id, title, bars, series, columns) {
    const box = el("div", {class: "chart", role: "img",
                           "aria-label": `${title}: ${bars.length} bars`});
    const table = el("table", {},
      el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", {scope: "col"}, c.title)))),
      el("tbody", {}, ...bars.map((bar, i) => el("tr", {"data-bar": i},
        ...columns.map((c) => c.cell(bar))))));
    const section = el("section", {"data-view": id, "data-bars": bars.length,
                                   "aria-labelledby": id + "-title"},
      el("h2", {id: id + "-title"}, title),
      bars.length ? box : el("p", {class: "muted"}, "No statistics for this span."),
      el("details", {}, el("summary", {}, "Numbers"), el("div", {class: "table"}, table)));
    if (bars.length) charts.push({box, bars, series, what: columns[0].title});
    return section;
  }

  function draw({box, bars, series, what}) {
    const labels = bars.map((b) => b.label);
    const axes = [{space: 44, incrs: [1, 2, 3, 4, 6, 8, 12, 24], values: (u, splits) =>
      splits.map((i) => labels[i] === undefined ? "" : labels[i])}, {size: 50}];
    // bars grow from 0: a scale that starts elsewhere would misstate their sizes
    const scales = {x: {time: false, range: [-0.6, bars.length - 0.4]},
                    y: {range: (u, min, max) => [Math.min(0, min), Math.max(0, max) || 1]}};
    if (series.some((s) => s.scale === "m3")) {
      axes.push({scale: "m3", side: 1, size: 50, grid: {show: false}});
      scales.m3 = {range: (u, min, max) => [Math.min(0, min), Math.max(max, 0.001)]};
    }
    const width = Math.max(200, box.clientWidth);
    const plot = new uPlot({width, height: 220, scales, axes,
      legend: {show: true}, cursor: {points: {show: false}},
      series: [{label: what, value: (u, i) => labels[i] === undefined ? "" : labels[i]},
        ...series.map((s) => Object.assign({fillTo: 0, width: 1}, s.scale === "m3"
          ? {paths: () => null, points: {show: true, size: 7, fill: s.color}}
          : {paths: uPlot.paths.bars({size: [0.8]}), fill: s.color}, s))]},
    [bars.map((b, i) => i), ...series.map((s) => bars.map((b) => b.values[s.key]))], box);
    new ResizeObserver(() => plot.setSize({width: Math.max(200, box.clientWidth),
                                           height: 220})).observe(box);
  }

  const DSMR_SERIES = [
    {key: "delivered", label: "Delivered kWh", color: "#2857c5", stroke: "#2857c5"},
    {key: "returned", label: "Returned kWh", color: "#1b7a3a", stroke: "#1b7a3a"},
    {key: "gas", label: "Gas m³", color: "#e07b00", stroke: "#e07b00", scale: "m3"}];

  // rows of /api/v1/energy (hours, days, months) as bars: delivered up, returned down
  function dsmrBars(rows, label) {
    return rows.map((r) => ({label: label(r), row: r,
      delivered: kwh(r.electricity1, r.electricity2),
      returned: kwh(r.electricity1_returned, r.electricity2_returned),
      values: {delivered: Number(kwh(r.electricity1, r.electricity2)),
               returned: -Number(kwh(r.electricity1_returned, r.electricity2_returned)),
               gas: Number(r.gas)}}));
  }
  function dsmrColumns(what, priced) {
    return [
      {title: what, cell: (b) => el("th", {scope: "row"}, b.label)},
      {title: "Delivered kWh", cell: (b) => cell("delivered", b.delivered, b.delivered)},
      {title: "Returned kWh", cell: (b) => cell("returned", b.returned, b.returned)},
      {title: "Gas m³", cell: (b) => cell("gas", b.row.gas, b.row.gas)},
      {title: "Costs €", cell: (b) => {
        const cost = priced(b.row) ? b.row.total_cost : null;
        return cell("total_cost", cost, cost === null ? "no contract" : cost);
      }}];
  }
  const hourLabel = (r) => r.hour_start.slice(11, 16);

  function hoursView(id, day) {
    const title = `Hours of ${longDay(day.day)}` + (day.complete ? "" : " (so far)");
    return barView(id, title, dsmrBars(day.hours, hourLabel), DSMR_SERIES,
                   dsmrColumns("Hour", () => day.priced));
  }

  function totals(day) {
    const t = day.totals;
    const heading = day.today ? "Today so far" : `${longDay(day.day)}` +
      (day.complete ? ", the whole day" : " so far");
    if (!t) {
      return [el("h2", {}, heading), el("p", {class: "muted", "data-total": "none"},
        "No electricity readings for this day.")];
    }
    // today's gas is the day's last minus first gas reading (DSMR-reader's "today");
    // a past day's is the sum of its hours, as its day statistics have it
    const gas = day.today ? t.gas_span : t.gas;
    const cost = (name, label, value) => {
      const shown = day.priced ? (value === undefined ? t[name] : value) : null;
      return card(name, shown, shown === null ? "no contract" : `€ ${shown}`, label);
    };
    return [el("h2", {}, heading), el("div", {class: "totals", "aria-label": heading},
      card("delivered", t.electricity_merged, `${t.electricity_merged} kWh`, "delivered"),
      card("returned", t.electricity_returned_merged, `${t.electricity_returned_merged} kWh`,
           "returned"),
      card("gas", gas, `${gas} m³`, "gas"),
      cost("total_cost", "costs in all"),
      cost("electricity_cost", "electricity", add(2, t.electricity1_cost, t.electricity2_cost)),
      cost("gas_cost", "gas costs"),
      cost("fixed_cost", "fixed costs"))];
  }

  // the non-DSMR energy and volume meters: their consumption per bucket (counters) or sum
  // (deltas), no costs
  function channelViews(channels, hours, days, months, day, month, year) {
    return channels.map((ch, index) => {
      const mine = (answers) => answers[index];  // its own request's answer
      const series = [{key: "v", label: `${ch.unit}`, color: "#6a3fb5", stroke: "#6a3fb5"}];
      const bars = (rows, label) => mine(rows).map((r) => {
        const v = r.consumption !== null && r.consumption !== undefined ? r.consumption : r.sum;
        return {label: label(r), value: v, values: {v}};
      });
      const columns = (what) => [
        {title: what, cell: (b) => el("th", {scope: "row"}, b.label)},
        {title: `${ch.unit}`, cell: (b) => cell("value", b.value,
          b.value === null || b.value === undefined ? "" : Number(b.value).toFixed(3))}];
      const key = `${ch.device}/${ch.channel}`;
      const id = "ch-" + key.replace(/[^A-Za-z0-9_-]/g, "_");
      return el("section", {"data-channel": key, class: "meter"},
        el("h2", {}, `${ch.device} / ${ch.channel}`, el("span", {class: "muted"},
          ` ${ch.quantity}, ${ch.kind}`)),
        barView(id + "-hours", `Hours of ${shift(day, -1)} and ${day}`,
                bars(hours, (r) => r.bucket.slice(11, 16)), series, columns("Hour")),
        barView(id + "-days", `Days of ${month}`, bars(days, (r) => r.bucket.slice(8, 10)),
                series, columns("Day")),
        barView(id + "-months", `Months of ${year}`,
                bars(months, (r) => MONTHS[Number(r.bucket.slice(5, 7)) - 1]), series,
                columns("Month")));
    });
  }

  // one request a channel: a device-by-channel query could take in another device's
  // channel of the same name, and a function must fit the channel's kind
  async function aggregates(channels, start, end, every, tz) {
    const answers = await Promise.all(channels.map((ch) => api("/api/v1/aggregates?"
      + new URLSearchParams({start, end, every, tz, source: ch.source, device: ch.device,
                             channel: ch.channel,
                             fn: ch.kind === "counter" ? "consumption" : "sum"}))));
    return answers;  // one list of rows a channel, in the channels' order
  }

  // live power: one small request each period (gas changes every few minutes: each 12th)
  function live(seconds) {
    const box = el("div", {class: "totals live", "aria-live": "polite", "data-live": "waiting"});
    let tick = 0;
    let gas = null;
    async function update() {
      try {
        const [power, newGas] = await Promise.all([
          answer("/api/v2/consumption/electricity-live"),
          tick % 12 === 0 ? answer("/api/v2/consumption/gas-live") : Promise.resolve(gas)]);
        gas = newGas;
        tick += 1;
        if (power.currently_delivered === undefined) {
          box.replaceChildren(el("p", {class: "muted"}, "No live readings from the meter."));
          box.dataset.live = "none";
          return;
        }
        box.replaceChildren(
          card("live_delivered", power.currently_delivered, `${power.currently_delivered} W`,
               "delivering now"),
          card("live_returned", power.currently_returned, `${power.currently_returned} W`,
               "returning now"),
          card("live_cost", power.cost_per_hour,
               power.cost_per_hour === null ? "no contract" : `€ ${power.cost_per_hour}`,
               "per hour" + (power.tariff_name ? ` (${power.tariff_name})` : "")),
          ...(gas && gas.currently_delivered !== undefined
            ? [card("live_gas", gas.currently_delivered, `${gas.currently_delivered} m³`,
                    "gas, last interval")] : []),
          el("p", {class: "muted as-of", "data-live-timestamp": power.timestamp},
             `as of ${new Date(power.timestamp).toLocaleTimeString()}`));
        box.dataset.live = "ok";
      } catch (error) {  // keep the last numbers, if any; say the refresh failed
        box.dataset.live = "error";
        const said = `Live refresh failed: ${error.message}`;
        const line = box.querySelector(".as-of");
        if (line) line.replaceChildren(said);
        else box.replaceChildren(el("p", {role: "status", class: "as-of"}, said));
      }
    }
    // the next refresh a period after this one answered: slow answers never pile up,
    // and an older answer never lands after a newer one
    async function loop() {
      await update();
      window.setTimeout(loop, seconds * 1000);
    }
    loop();
    return box;
  }

  async function load() {
    const seconds = period();
    const asked = params.get("day");
    const day = await api("/api/v1/energy/day" + (asked ? `?day=${encodeURIComponent(asked)}` : ""));
    const month = day.day.slice(0, 7), year = day.day.slice(0, 4);
    const tz = day.timezone;
    const [before, days, months, allChannels] = await Promise.all([
      api(`/api/v1/energy/day?day=${shift(day.day, -1)}`),
      api(`/api/v1/energy/days?start=${month}-01&end=${nextMonth(month)}-01`),
      api(`/api/v1/energy/months?start=${year}-01&end=${Number(year) + 1}-01`),
      api("/api/v1/channels")]);
    const others = allChannels.filter((c) => c.device !== day.device
      && ["energy", "volume"].includes(c.quantity) && ["counter", "delta"].includes(c.kind));
    const [hourly, daily, monthly] = await Promise.all([
      aggregates(others, shift(day.day, -1), shift(day.day, 1), "1h", tz),
      aggregates(others, `${month}-01`, `${nextMonth(month)}-01`, "1d", tz),
      aggregates(others, `${year}-01-01`, `${Number(year) + 1}-01-01`, "1mo", tz)]);
    const monthName = `${MONTHS[Number(month.slice(5)) - 1]} ${year}`;
    show(TITLE, controls(day.day),
      el("p", {class: "muted"}, `DSMR meter ${day.device}, times in ${tz}.`),
      el("h2", {}, "Live"), live(seconds),
      ...totals(day),
      hoursView("day", day),
      hoursView("yesterday", before),
      barView("month", `Days of ${monthName}`, dsmrBars(days.days, (r) => r.day.slice(8)),
              DSMR_SERIES, dsmrColumns("Day", (r) => r.priced)),
      barView("year", `Months of ${year}`,
              dsmrBars(months.months, (r) => MONTHS[Number(r.month.slice(5)) - 1]),
              DSMR_SERIES, dsmrColumns("Month", (r) => r.priced_days > 0)),
      ...channelViews(others, hourly, daily, monthly, day.day, monthName, year));
    // charts measure their box: draw once the page holds them
    charts.forEach(draw);
    document.body.dataset.day = day.day;  // the day shown (today's changes at midnight)
    document.body.dataset.ready = "true";
  }

  load().catch((error) => failed(TITLE,
    new Error(`Could not show this energy view: ${error.message}`), controls(null)));
})();
