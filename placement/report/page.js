// The report's only script: the interval selector and hover read-outs. No network, no libraries.
(function () {
  "use strict";
  var tip = document.getElementById("tip");
  document.addEventListener("mousemove", function (event) {
    var target = event.target.closest ? event.target.closest("[data-tip]") : null;
    if (!target) { tip.style.display = "none"; return; }
    tip.textContent = target.getAttribute("data-tip");
    tip.style.display = "block";
    tip.style.left = (event.pageX + 14) + "px";
    tip.style.top = (event.pageY + 14) + "px";
  });
  var select = document.getElementById("interval");
  function show(k) {
    document.querySelectorAll("[data-interval]").forEach(function (group) {
      group.style.display = group.getAttribute("data-interval") === k ? "" : "none";
    });
    document.querySelectorAll(".mem-bar").forEach(function (bar) {
      bar.classList.toggle("selected", bar.classList.contains("interval-" + k));
    });
    document.querySelectorAll("tr[data-boundary]").forEach(function (row) {
      row.classList.toggle("selected", row.getAttribute("data-boundary") === k);
    });
  }
  select.addEventListener("change", function () { show(select.value); });
  show(select.value);
})();
