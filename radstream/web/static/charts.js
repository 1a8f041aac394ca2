// The app's time-series charts, drawn with uPlot (vendored, uPlot-1.6.32.iife.min.js) from the JSON in
// the <script type="application/json"> that a .chart element names (data-for): {x: [UTC times], series:
// {name: [values]}}. Redrawn after every htmx swap (polling or server-sent events).
(function () {
  const colors = ['#3f7cbf', '#d9822b', '#2e8b57', '#a13d63', '#6b5fb5', '#8a6d1d'];
  function draw(root) {
    (root || document).querySelectorAll('.chart[data-for]').forEach(el => {
      const src = document.getElementById(el.dataset.for);
      if (!src || typeof uPlot === 'undefined') return;
      const data = JSON.parse(src.textContent);
      el.replaceChildren();
      if (!data.x.length) { el.textContent = 'No data in the period.'; return; }
      const xs = data.x.map(t => Date.parse(t.replace(' ', 'T') + 'Z') / 1000);
      const names = Object.keys(data.series);
      const bars = uPlot.paths.bars({size: [0.6, 48]});
      new uPlot({
        width: Math.max(320, Math.min(900, el.clientWidth || 600)), height: 200,
        series: [{}].concat(names.map((n, i) => ({
          label: n, stroke: colors[i % colors.length], fill: colors[i % colors.length] + '55', paths: bars}))),
        scales: {x: {time: true}}, legend: {live: false},
      }, [xs].concat(names.map(n => data.series[n])), el);
    });
  }
  document.addEventListener('DOMContentLoaded', () => draw());
  document.addEventListener('htmx:afterSettle', e => draw(e.target));
  document.addEventListener('htmx:sseMessage', e => draw(e.target));
})();
