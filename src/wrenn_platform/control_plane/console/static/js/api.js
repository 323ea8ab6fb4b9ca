// The one way the console calls the API: same origin, session cookie, CSRF header on every change.
const CSRF_COOKIE = "wrenn_csrf";
const CSRF_HEADER = "X-CSRF-Token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function csrfToken() {
  const pair = document.cookie.split("; ").find((c) => c.startsWith(CSRF_COOKIE + "="));
  return pair ? decodeURIComponent(pair.slice(CSRF_COOKIE.length + 1)) : "";
}

function headersFor(method) {
  return method === "GET" || method === "HEAD" ? {} : { [CSRF_HEADER]: csrfToken() };
}

// Called with an ApiError of status 401 (the session ended): main.js sends the user to log in.
let onUnauthorized = () => {};
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

async function errorOf(response) {
  let code = "http_" + response.status;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch {
    /* not JSON: keep the status line */
  }
  return new ApiError(response.status, code, message);
}

function fail(error, quiet) {
  if (error.status === 401 && !quiet) onUnauthorized(error);
  throw error;
}

// `quiet`: a 401 is the caller's answer (login form, session probe), not a reason to redirect.
export async function request(method, path, body, { raw = false, quiet = false } = {}) {
  const headers = headersFor(method);
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const send = () => fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  let response;
  try {
    response = await send();
  } catch (error) {
    // Aborted by the browser (e.g. a network change on this machine): a read is safe to repeat.
    if (method !== "GET") throw new ApiError(0, "network", `the request failed: ${error.message}`);
    response = await send();
  }
  if (!response.ok) fail(await errorOf(response), quiet);
  if (raw) return response;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

export const get = (path, options) => request("GET", path, undefined, options);
export const post = (path, body, options) => request("POST", path, body ?? {}, options);
export const patch = (path, body) => request("PATCH", path, body);
export const del = (path) => request("DELETE", path);

// A multipart upload with progress (fetch cannot report upload progress): resolves on 2xx.
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader(CSRF_HEADER, csrfToken());
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, "network", "the upload was interrupted"));
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) return resolve();
      let code = "http_" + xhr.status;
      let message = `${xhr.status} ${xhr.statusText}`;
      try {
        ({ code, message } = JSON.parse(xhr.responseText).error);
      } catch {
        /* keep the status line */
      }
      try {
        fail(new ApiError(xhr.status, code, message));
      } catch (error) {
        reject(error);
      }
    };
    xhr.send(form);
  });
}
