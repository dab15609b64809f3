"""The dashboard's page: layout, style, and the few lines that swap in new panels.

``{{name}}`` marks where each panel's first rendering goes; ``{{STREAM}}``
is the URL of the server-sent events. The script only listens: each
``panels`` event carries every panel's HTML, set as its element's content.
"""

from __future__ import annotations

from typing import Final

__all__ = ["PAGE"]

PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>diaspora dashboard</title>
<style>
  body { font: 13px/1.35 system-ui, sans-serif; margin: 0; color: #1d1d1f; background: #f5f5f7; }
  header { background: #1d1d1f; color: #f5f5f7; padding: 8px 14px; display: flex; gap: 18px;
           align-items: baseline; }
  header h1 { font-size: 15px; margin: 0; }
  main { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 12px;
         padding: 12px; }
  section { background: #fff; border-radius: 6px; padding: 8px 10px;
            box-shadow: 0 1px 2px rgba(0,0,0,.08); overflow: auto; }
  section h2 { font-size: 13px; margin: 0 0 6px; text-transform: uppercase; color: #555;
               letter-spacing: .04em; }
  .wide { grid-column: 1 / -1; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 2px 6px; border-bottom: 1px solid #eee; white-space: nowrap; }
  th { font-weight: 600; color: #555; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; }
  td.error, td.detail { white-space: normal; color: #8a1c1c; max-width: 32em; }
  td.detail { color: #444; }
  .state.running, .state.up { color: #127a2f; font-weight: 600; }
  .state.crashed, .state.dead, .state.gave_up, .state.hung, .state.down
    { color: #b00020; font-weight: 700; }
  .state.backoff, .state.stalled, .state.degraded { color: #a05a00; font-weight: 600; }
  .state.stopped, .state.exited { color: #888; }
  .open { color: #b00020; font-weight: 600; }
  .empty { color: #888; margin: 4px 0; }
  .alert { color: #b00020; }
  .conn.connected { color: #7ee08f; } .conn.disconnected { color: #ff8080; }
  .plots { display: flex; flex-wrap: wrap; gap: 10px; }
  svg.plot .axis { stroke: #999; } svg.plot .tick { font-size: 10px; fill: #666; }
  svg.plot .plot-title { font-size: 11px; font-weight: 600; fill: #333; }
  svg.plot .legend { font-size: 10px; }
</style>
</head>
<body>
<header><h1>diaspora</h1><span id="status">{{status}}</span>
  <span id="live" data-live="no">waiting for updates</span></header>
<main>
  <section class="wide"><h2>Supervision tree</h2><div id="tree">{{tree}}</div></section>
  <section><h2>Lag and rate</h2><div id="plots" class="plots">{{plots}}</div></section>
  <section><h2>Alerts</h2><div id="alerts">{{alerts}}</div>
    <h2>Sites and links</h2><div id="sites">{{sites}}</div></section>
  <section class="wide"><h2>Timeline: faults, restarts, policy switches, recoveries</h2>
    <div id="timeline">{{timeline}}</div></section>
  <section><h2>Views</h2><div id="views">{{views}}</div></section>
  <section><h2>Pools</h2><div id="pools">{{pools}}</div></section>
</main>
<script>
  // Everything is rendered on the server; this only swaps in what it sends.
  const live = document.getElementById("live");
  const source = new EventSource("{{STREAM}}");
  source.addEventListener("panels", (message) => {
    const update = JSON.parse(message.data);
    for (const [id, html] of Object.entries(update.panels)) {
      const element = document.getElementById(id);
      if (element) element.innerHTML = html;
    }
    live.dataset.live = "yes";
    live.dataset.version = update.version;
    live.textContent = "live";
  });
  source.onerror = () => { live.dataset.live = "no"; live.textContent = "reconnecting…"; };
</script>
</body>
</html>
"""
