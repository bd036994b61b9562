// The flame graph's interaction: zoom (click a frame; click "Reset zoom", the root or press
// Escape to go back), search (a regular expression over frame names: matches are highlighted
// and their share of the weight shown), and the details of the frame under the pointer.
// Each frame carries its offset and weight in the graph's own unit (data-o, data-w) and its
// depth (data-d): positions are recomputed from those, so widths stay exactly proportional.
(function () {
  "use strict";
  const svg = document.documentElement;
  const margin = Number(svg.getAttribute("data-margin"));
  const charWidth = Number(svg.getAttribute("data-char-width"));
  const total = Number(svg.getAttribute("data-total"));
  const span = Number(svg.getAttribute("width")) - 2 * margin;
  const details = document.getElementById("details");
  const matched = document.getElementById("matched");
  const unzoom = document.getElementById("unzoom");
  const search = document.getElementById("search");
  const frames = Array.from(document.querySelectorAll("g.frame"), (g) => ({
    g: g,
    rect: g.querySelector("rect"),
    text: g.querySelector("text"),
    label: g.querySelector("title").textContent.split("\n")[0],
    offset: Number(g.getAttribute("data-o")),
    weight: Number(g.getAttribute("data-w")),
    depth: Number(g.getAttribute("data-d")),
  }));
  const byElement = new Map(frames.map((frame) => [frame.g, frame]));

  // As flamegraph.py's fitted(): the label, its function's name alone, that name cut, nothing
  function fit(label, width) {
    const fits = Math.floor((width - 6) / charWidth);
    if (fits >= label.length) return label;
    const name = label.split(" (")[0];
    if (fits >= name.length) return name;
    return fits >= 3 ? name.slice(0, fits - 2) + ".." : "";
  }

  function place(frame, x, width) {
    frame.rect.setAttribute("x", x);
    frame.rect.setAttribute("width", width);
    frame.text.setAttribute("x", x + 3);
    frame.text.textContent = fit(frame.label, width);
  }

  function zoom(target) {
    const start = target.offset, end = target.offset + target.weight;
    for (const frame of frames) {
      const inside = frame.offset >= start && frame.offset + frame.weight <= end && frame.depth >= target.depth;
      const ancestor = frame.depth < target.depth && frame.offset <= start && frame.offset + frame.weight >= end;
      frame.g.classList.toggle("hidden", !inside && !ancestor);
      frame.g.classList.toggle("ancestor", ancestor);
      if (ancestor) place(frame, margin, span);
      else if (inside) place(frame, margin + (frame.offset - start) * span / target.weight, frame.weight * span / target.weight);
    }
    unzoom.classList.toggle("hidden", target.depth === 0);
    showMatches();
  }

  function reset() {
    if (frames.length) zoom(frames[0]);
  }

  // The share of the total weight the matching frames hold: the union of their ranges, so a
  // match inside another match is not counted twice.
  function showMatches() {
    const term = search.value;
    let pattern = null;
    if (term) {
      try { pattern = new RegExp(term); } catch (error) { pattern = new RegExp(term.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")); }
    }
    const ranges = [];
    for (const frame of frames) {
      const match = pattern !== null && frame.depth > 0 && pattern.test(frame.label);
      frame.g.classList.toggle("match", match);
      if (match) ranges.push([frame.offset, frame.offset + frame.weight]);
    }
    if (!pattern) { matched.textContent = ""; return; }
    ranges.sort((a, b) => a[0] - b[0]);
    let covered = 0, reach = -Infinity;
    for (const [from, to] of ranges) {
      if (to <= reach) continue;
      covered += to - Math.max(from, reach);
      reach = to;
    }
    const share = total ? (100 * covered / total).toFixed(2) : "0.00";
    matched.textContent = `${ranges.length} frames match, ${share}% of the weight`;
  }

  svg.addEventListener("click", (event) => {
    const g = event.target.closest && event.target.closest("g.frame");
    if (g) zoom(byElement.get(g));
    else if (event.target === unzoom) reset();
  });
  svg.addEventListener("mouseover", (event) => {
    const g = event.target.closest && event.target.closest("g.frame");
    if (g) details.textContent = g.querySelector("title").textContent.replace("\n", ": ");
  });
  svg.addEventListener("mouseout", () => { details.textContent = " "; });
  search.addEventListener("input", showMatches);
  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "f" || event.key === "/" && document.activeElement !== search) {
      event.preventDefault();
      search.focus();
    } else if (event.key === "Escape") {
      search.value = "";
      reset();
    }
  });
})();
