// Refresh the worklist table every 5 seconds without reloading the page.
(function () {
  "use strict";
  const table = document.getElementById("worklist");
  if (!table) return;
  const labels = {agree: "Agree", false_positive: "False positive", missed: "Missed pneumothorax",
                  wrong_extent: "Wrong extent", corrected: "Corrected SEG received"};

  function ago(iso) {
    if (!iso) return "–";
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 90) return s + " s ago";
    if (s < 5400) return Math.floor(s / 60) + " min ago";
    if (s < 172800) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function render(rows) {
    const body = document.createElement("tbody");
    rows.forEach(function (row, i) {
      const tr = document.createElement("tr");
      tr.className = "state-" + row.state;
      tr.dataset.uid = row.study_instance_uid;
      cell(tr, String(i + 1));
      cell(tr, row.priority.toFixed(1), "num");
      const state = cell(tr, "");
      const link = document.createElement("a");
      link.href = "/studies/" + encodeURIComponent(row.study_instance_uid);
      link.textContent = row.state;
      state.appendChild(link);
      if (row.reason) {
        const reason = document.createElement("div");
        reason.className = "reason";
        reason.textContent = row.reason;
        state.appendChild(reason);
      }
      cell(tr, row.probability === null ? "–" : row.probability.toFixed(3), "num");
      let area = row.area_mm2 === null ? "" : (row.area_mm2 / 100).toFixed(1) + " cm²";
      if (row.hemithorax_percent !== null) area += " (" + row.hemithorax_percent.toFixed(0) + " %)";
      cell(tr, area, "num");
      cell(tr, row.laterality || "");
      const when = cell(tr, ago(row.last_instance_at), "ago");
      when.dataset.time = row.last_instance_at || "";
      cell(tr, row.accession_number || "");
      cell(tr, row.model_version || "", "muted");
      cell(tr, labels[row.feedback] || "");
      body.appendChild(tr);
    });
    if (!rows.length) {
      const tr = document.createElement("tr");
      cell(tr, "No studies yet.", "muted").colSpan = 10;
      body.appendChild(tr);
    }
    table.replaceChild(body, table.tBodies[0]);
  }

  function refresh() {
    const state = table.dataset.state;
    const url = "/api/worklist" + (state ? "?state=" + encodeURIComponent(state) : "");
    fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (rows) {
        render(rows);
        document.getElementById("refreshed").textContent =
          "updated " + new Date().toLocaleTimeString();
      })
      .catch(function (e) {
        document.getElementById("refreshed").textContent = "refresh failed (" + e.message + ")";
      });
  }
  setInterval(refresh, 5000);
})();
