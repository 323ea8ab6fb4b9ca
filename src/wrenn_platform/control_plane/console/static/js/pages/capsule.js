// One capsule: its record (live), actions, and tabs for the terminal and the files.
import { get } from "../api.js";
import { errorLine, h, statusBadge, when } from "../dom.js";
import { watchCapsules } from "../events.js";
import { fileBrowser } from "../files.js";
import { openTerminal } from "../terminal.js";
import { capsuleActions } from "./capsule_actions.js";

export async function capsuleView(main, id) {
  const errors = errorLine();
  const summary = h("div");
  const tabPanel = h("div", { role: "tabpanel", id: "capsule-tab" });
  const status = h("p", { class: "muted", role: "status" });
  let capsule = null;
  let closeTab = null;

  function drawSummary() {
    const meta = Object.entries(capsule.metadata || {});
    summary.replaceChildren(
      h("p", {}, statusBadge(capsule.status), " ", capsuleActions(capsule, errors, update)),
      h("dl", { class: "meta" }, [
        ["Template", capsule.template], ["vCPUs", capsule.vcpus], ["Memory", `${capsule.memory_mb} MB`],
        ["Disk", capsule.disk_size_mb ? `${capsule.disk_size_mb} MB` : "—"],
        ["Idle pause", capsule.timeout_sec ? `${capsule.timeout_sec} s` : "never"],
        ["Created", when(capsule.created_at)], ["Started", when(capsule.started_at)],
        ["Last active", when(capsule.last_active_at)],
        ...meta,
      ].flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v ?? "—"))])));
  }

  function update(next) {
    const wasRunning = capsule && capsule.status === "running";
    capsule = { ...capsule, ...next };
    drawSummary();
    if (wasRunning !== (capsule.status === "running")) showTab(currentTab);
  }

  const tabs = [
    { key: "terminal", label: "Terminal", open: async (panel) => {
      const box = h("div", { class: "terminal-box", "aria-label": "Terminal" });
      panel.replaceChildren(status, box);
      return openTerminal(box, id, (text) => { status.textContent = text; });
    } },
    { key: "files", label: "Files", open: async (panel) => { panel.replaceChildren(fileBrowser(id)); return null; } },
  ];
  let currentTab = "terminal";
  // No focus change on mousedown: the terminal losing focus between mousedown and mouseup shifts the
  // page (xterm's blur), and the click would land elsewhere. Keyboard: Tab to it, Enter or Space.
  const tabButtons = tabs.map((tab) => h("button", { type: "button", role: "tab", id: `tab-${tab.key}`,
    "aria-controls": "capsule-tab", onmousedown: (e) => e.preventDefault(), onclick: () => showTab(tab.key) },
  tab.label));

  async function showTab(key) {
    currentTab = key;
    if (closeTab) closeTab();
    closeTab = null;
    tabButtons.forEach((b, i) => b.setAttribute("aria-selected", String(tabs[i].key === key)));
    if (!capsule || capsule.status !== "running") {
      tabPanel.replaceChildren(h("p", { class: "muted" }, "The capsule is not running: resume it to use its terminal and files."));
      return;
    }
    try {
      closeTab = await tabs.find((t) => t.key === key).open(tabPanel);
    } catch (error) {
      tabPanel.replaceChildren(h("p", { class: "error", role: "alert" }, error.message));
    }
  }

  main.append(h("p", {}, h("a", { href: "#/capsules" }, "← Capsules")), h("h1", { class: "mono" }, id), errors, summary,
    h("div", { role: "tablist", "aria-label": "Capsule tools" }, tabButtons), tabPanel);
  try {
    capsule = await get(`/v1/capsules/${id}`);
  } catch (error) {
    if (error.status === 404) main.replaceChildren(h("h1", {}, "Capsule not found"),
      h("p", {}, error.message, " ", h("a", { href: "#/capsules" }, "Back to capsules")));
    else errors.show(error);
    return null;
  }
  drawSummary();
  showTab(currentTab);
  const stop = watchCapsules((c) => c.id === id && update(c),
    (changed) => changed === id && get(`/v1/capsules/${id}`).then(update, () => {}));
  return () => {
    stop();
    if (closeTab) closeTab();
  };
}
