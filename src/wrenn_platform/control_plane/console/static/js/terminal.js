// A terminal over the capsule's PTY WebSocket (`/v1/capsules/{id}/pty`), drawn by xterm.js.
// Keystrokes go as binary frames (raw bytes), so the server answers with binary output frames;
// control messages (`started`, `exit`, `error`, `ping`) are the contract's JSON text frames.
// The PTY's tag is kept per capsule in sessionStorage: reopening the page reconnects to it.

let xtermLoaded = null;

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.onload = resolve;
    script.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.append(script);
  });
}

// xterm.js is loaded only when a terminal is opened, so the other pages paint without it.
function loadXterm() {
  if (!xtermLoaded) {
    const css = document.createElement("link");
    css.rel = "stylesheet";
    css.href = "/console/vendor/xterm.css";
    document.head.append(css);
    xtermLoaded = Promise.all([loadScript("/console/vendor/xterm.js"), loadScript("/console/vendor/addon-fit.js")]);
  }
  return xtermLoaded;
}

const tagKey = (capsuleId) => `wrenn.pty.${capsuleId}`;

function base64ToBytes(data) {
  return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
}

// Opens a terminal in `element`; `onStatus(text)` tells the user what happens. Returns close().
export async function openTerminal(element, capsuleId, onStatus) {
  await loadXterm();
  const term = new window.Terminal({ cursorBlink: true, fontSize: 14, convertEol: false });
  const fit = new window.FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(element);
  fit.fit();
  const encoder = new TextEncoder();
  let socket = null;
  let closed = false;
  let lastReconnect = 0;

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(message);
  }

  function connect(reuseTag) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/v1/capsules/${capsuleId}/pty`);
    socket.binaryType = "arraybuffer";
    const tag = reuseTag ? sessionStorage.getItem(tagKey(capsuleId)) : null;
    socket.onopen = () => {
      send(JSON.stringify(tag
        ? { type: "connect", tag }
        : { type: "start", cols: term.cols, rows: term.rows, envs: { TERM: "xterm-256color" } }));
      onStatus(tag ? "Reconnecting to the running terminal…" : "Starting a shell…");
    };
    socket.onmessage = (message) => {
      if (message.data instanceof ArrayBuffer) return term.write(new Uint8Array(message.data));
      const event = JSON.parse(message.data);
      if (event.type === "output") term.write(base64ToBytes(event.data));
      else if (event.type === "started") {
        if (event.tag) sessionStorage.setItem(tagKey(capsuleId), event.tag);
        onStatus("Connected");
        send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));
      } else if (event.type === "exit") {
        sessionStorage.removeItem(tagKey(capsuleId));
        onStatus(`The shell exited (code ${event.exit_code}).`);
      } else if (event.type === "ping") send(JSON.stringify({ type: "pong" }));
      else if (event.type === "error") {
        if (tag && event.fatal) {
          // The remembered terminal is gone: start a new one.
          sessionStorage.removeItem(tagKey(capsuleId));
          socket.onclose = null;
          socket.close();
          connect(false);
          return;
        }
        onStatus(`Terminal error: ${event.data}`);
      }
    };
    socket.onclose = (event) => {
      if (closed) return;
      // Dropped without a close handshake (network change, server restart): the shell keeps running
      // in the capsule, so reconnect to it by its tag, once per second at most.
      const tagNow = sessionStorage.getItem(tagKey(capsuleId));
      if (event.code === 1006 && tagNow && Date.now() - lastReconnect > 1000) {
        lastReconnect = Date.now();
        onStatus("Connection lost; reconnecting…");
        connect(true);
        return;
      }
      onStatus(`Disconnected${event.reason ? ": " + event.reason : ""}. Reopen the tab to reconnect.`);
    };
  }

  term.onData((data) => send(encoder.encode(data)));
  term.onBinary((data) => send(Uint8Array.from(data, (c) => c.charCodeAt(0))));
  term.onResize(({ cols, rows }) => send(JSON.stringify({ type: "resize", cols, rows })));
  const refit = () => fit.fit();
  window.addEventListener("resize", refit);
  connect(true);
  term.focus();
  return () => {
    closed = true;
    window.removeEventListener("resize", refit);
    if (socket) socket.close();
    term.dispose();
  };
}
