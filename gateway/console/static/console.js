// Charts: each .chart[data-spec] holds a Vega-Lite spec (JSON) built by the gateway.
"use strict";
function embedCharts(root) {
  root.querySelectorAll(".chart[data-spec]").forEach(function (el) {
    if (el.dataset.embedded) { return; }
    el.dataset.embedded = "1";
    window.vegaEmbed(el, JSON.parse(el.dataset.spec), {
      actions: false, renderer: "svg", defaultStyle: false
    });
  });
}
document.addEventListener("DOMContentLoaded", function () { embedCharts(document); });
