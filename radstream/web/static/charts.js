// The app's time-series charts, drawn with uPlot (vendored, uPlot-1.6.32.iife.min.js) from the JSON in
// the <script type="application/json"> that a .chart element names (data-for): {x: [UTC times], step:
// seconds per bucket, series: {name: [values]}}. Bars: side by side for two series, lines with points for
// more. Redrawn after every htmx swap (polling or server-sent events).
(function () {
  const colors = ['#3f7cbf', '#d9822b', '#2e8b57', '#a13d63', '#6b5fb5', '#8a6d1d'];
  function draw(root) {
    (root || document).querySelectorAll('.chart[data-for]').forEach(el => {
      const src = document.getElementById(el.dataset.for);
      if (!src || typeof uPlot === 'undefined') return;
      const data = JSON.parse(src.textContent);
      el.replaceChildren();
      if (!data.x.length) { el.textContent = 'No data in the period.'; return; }
      const step = data.step || 3600;
      // an empty bucket either side, so that one bucket is not spread over years by the axis
      const xs = data.x.map(t => Date.parse(t.replace(' ', 'T') + 'Z') / 1000);
      xs.unshift(xs[0] - step);
      xs.push(xs[xs.length - 1] + step);
      const names = Object.keys(data.series);
      const ys = names.map(n => [null].concat(data.series[n], [null]));
      const path = i => names.length === 1 ? uPlot.paths.bars({size: [0.6, 48]})
        : names.length === 2 ? uPlot.paths.bars({size: [0.35, 24], align: i === 0 ? -1 : 1}) : undefined;
      new uPlot({
        width: Math.max(320, Math.min(900, el.clientWidth || 600)), height: 200,
        series: [{}].concat(names.map((n, i) => ({
          label: n, stroke: colors[i % colors.length], fill: names.length <= 2 ? colors[i % colors.length] + '88' : undefined,
          paths: path(i), points: {show: names.length > 2}}))),
        scales: {x: {time: true}, y: {range: (u, min, max) => [0, Math.max(1, max) * 1.1]}},
        legend: {live: false},
      }, [xs].concat(ys), el);
    });
  }
  document.addEventListener('DOMContentLoaded', () => draw());
  document.addEventListener('htmx:afterSettle', e => draw(e.target));
  document.addEventListener('htmx:sseMessage', e => draw(e.target));
})();
