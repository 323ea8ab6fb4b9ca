// The capsule's file browser: list a directory, open a text file, download, upload (button or
// drag and drop, with progress), make a directory, delete.
import { post, request, upload } from "./api.js";
import { busy, errorLine, h } from "./dom.js";

const join = (dir, name) => (dir.endsWith("/") ? dir : dir + "/") + name;
const parent = (dir) => dir.replace(/\/[^/]+\/?$/, "") || "/";

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export function fileBrowser(capsuleId, start = "/home/user") {
  const base = `/v1/capsules/${capsuleId}/files`;
  let cwd = start;
  const errors = errorLine();
  const pathInput = h("input", { "aria-label": "Directory", value: cwd, class: "mono", size: 40 });
  const rows = h("tbody");
  const viewer = h("div");
  const progress = h("span", { role: "status" });

  async function read(path) {
    const response = await request("POST", `${base}/read`, { path }, { raw: true });
    return response.blob();
  }

  async function open(entry) {
    const blob = await read(entry.path);
    viewer.replaceChildren(h("h3", {}, entry.path), h("pre", { class: "file", "aria-label": `Contents of ${entry.name}` },
      await blob.text()));
  }

  async function download(entry) {
    const url = URL.createObjectURL(await read(entry.path));
    const a = h("a", { href: url, download: entry.name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  function entryRow(entry) {
    const act = (label, work, cls) => {
      const button = h("button", { type: "button", class: cls, "aria-label": `${label} ${entry.name}` }, label);
      button.addEventListener("click", () => busy(button, errors, work));
      return button;
    };
    const isDir = entry.type === "directory";
    const name = isDir
      ? h("a", { href: "#", onclick: (e) => { e.preventDefault(); list(entry.path); } }, entry.name + "/")
      : entry.name;
    return h("tr", { "data-file": entry.name },
      h("td", { class: "mono" }, name),
      h("td", {}, isDir ? "—" : size(entry.size)),
      h("td", { class: "mono" }, entry.permissions || ""),
      h("td", {}, h("span", { class: "actions" },
        isDir ? null : act("Open", () => open(entry)),
        isDir ? null : act("Download", () => download(entry)),
        act("Delete", async () => {
          if (!confirm(`Delete ${entry.path}?`)) return;
          await post(`${base}/remove`, { path: entry.path });
          await list(cwd);
        }, "danger"))));
  }

  async function list(dir) {
    errors.show(null);
    try {
      const answer = await post(`${base}/list`, { path: dir, depth: 1 });
      cwd = dir;
      pathInput.value = dir;
      const entries = (answer.entries || []).sort((a, b) =>
        (a.type === "directory") === (b.type === "directory") ? a.name.localeCompare(b.name) : a.type === "directory" ? -1 : 1);
      rows.replaceChildren(...entries.map(entryRow));
      if (!entries.length) rows.append(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "Empty directory.")));
    } catch (error) {
      if (error.status !== 401) errors.show(error);
    }
  }

  async function send(files) {
    for (const file of files) {
      const bar = h("progress", { max: 1, value: 0, "aria-label": `Uploading ${file.name}` });
      progress.replaceChildren(`Uploading ${file.name} `, bar);
      const form = new FormData();
      form.append("path", join(cwd, file.name));
      form.append("file", file);
      try {
        await upload(`${base}/write`, form, (fraction) => { bar.value = fraction; });
        progress.textContent = `Uploaded ${file.name}`;
      } catch (error) {
        progress.textContent = "";
        if (error.status !== 401) errors.show(error);
        return;
      }
    }
    await list(cwd);
  }

  const fileInput = h("input", { type: "file", multiple: true, "aria-label": "Upload files",
    onchange: (e) => send([...e.target.files]) });
  const drop = h("div", { class: "drop" }, "Drop files here to upload them into this directory, or ", fileInput);
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    send([...e.dataTransfer.files]);
  });

  const mkdirName = h("input", { name: "name", "aria-label": "New directory name", placeholder: "new-directory", required: true });
  const mkdirButton = h("button", { type: "submit" }, "Make directory");
  const mkdirForm = h("form", { class: "inline", "aria-label": "Make directory" }, mkdirName, mkdirButton);
  mkdirForm.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(mkdirButton, errors, async () => {
      await post(`${base}/mkdir`, { path: join(cwd, mkdirName.value) });
      mkdirName.value = "";
      await list(cwd);
    });
  });

  const goForm = h("form", { class: "inline", "aria-label": "Go to directory" },
    h("button", { type: "button", onclick: () => list(parent(cwd)) }, "Up"), pathInput, h("button", { type: "submit" }, "Go"));
  goForm.addEventListener("submit", (e) => { e.preventDefault(); list(pathInput.value); });

  const element = h("section", { "aria-label": "Files" }, goForm, errors, drop, progress, mkdirForm,
    h("table", { "aria-label": "Directory listing" },
      h("thead", {}, h("tr", {}, ["Name", "Size", "Permissions", "Actions"].map((t) => h("th", {}, t)))), rows),
    viewer);
  list(cwd);
  return element;
}
