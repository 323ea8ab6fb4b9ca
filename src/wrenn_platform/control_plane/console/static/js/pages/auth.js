// Log in, sign up, and the activation link's page.
import { post } from "../api.js";
import { busy, errorLine, formData, h } from "../dom.js";
import * as session from "../session.js";
import { afterLogin, go } from "../nav.js";

export function loginView(main) {
  const errors = errorLine();
  const button = h("button", { class: "primary", type: "submit" }, "Log in");
  const form = h("form", { class: "stack", "aria-label": "Log in" },
    h("label", {}, "Email", h("input", { name: "email", type: "email", required: true, autocomplete: "username" })),
    h("label", {}, "Password",
      h("input", { name: "password", type: "password", required: true, autocomplete: "current-password" })),
    button, errors);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(button, errors, async () => {
      session.remember(await post("/v1/auth/login", formData(form), { quiet: true }));
      afterLogin();
    });
  });
  main.append(h("h1", {}, "Log in to Wrenn"), form,
    h("p", {}, "No account yet? ", h("a", { href: "#/signup" }, "Sign up"), " · ",
      h("a", { href: "#/forgot" }, "Forgotten password?")));
  form.querySelector("input").focus();
}

export function signupView(main) {
  const errors = errorLine();
  const done = h("p", { class: "notice", role: "status" });
  const button = h("button", { class: "primary", type: "submit" }, "Sign up");
  const form = h("form", { class: "stack", "aria-label": "Sign up" },
    h("label", {}, "Name", h("input", { name: "name", required: true, autocomplete: "name" })),
    h("label", {}, "Email", h("input", { name: "email", type: "email", required: true, autocomplete: "email" })),
    h("label", {}, "Password (8 characters or more)",
      h("input", { name: "password", type: "password", minlength: "8", required: true, autocomplete: "new-password" })),
    button, errors, done);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(button, errors, async () => {
      const answer = await post("/v1/auth/signup", formData(form), { quiet: true });
      done.textContent = answer.message;
    });
  });
  main.append(h("h1", {}, "Create your account"), form,
    h("p", {}, "Already have one? ", h("a", { href: "#/login" }, "Log in")));
  form.querySelector("input").focus();
}

// The email's link: `/activate?token=…`. One click posts the token (a mail scanner that only
// fetches the link does not use it up), then the console opens on the new session.
export function activateView(main) {
  const token = new URLSearchParams(location.search).get("token") || "";
  const errors = errorLine();
  const button = h("button", { class: "primary", type: "button" }, "Activate my account");
  button.addEventListener("click", () =>
    busy(button, errors, async () => {
      session.remember(await post("/v1/auth/activate", { token }, { quiet: true }));
      history.replaceState(null, "", "/#/capsules"); // drop the used token from the address bar
      go("#/capsules");
    }));
  main.replaceChildren(h("h1", {}, "Activate your account"),
    token ? button : h("p", { class: "error" }, "This link has no activation token."), errors);
  button.focus();
}

export function forgotView(main) {
  const errors = errorLine();
  const done = h("p", { class: "notice", role: "status" });
  const button = h("button", { class: "primary", type: "submit" }, "Send the reset link");
  const form = h("form", { class: "stack", "aria-label": "Forgotten password" },
    h("label", {}, "Email", h("input", { name: "email", type: "email", required: true, autocomplete: "email" })),
    button, errors, done);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(button, errors, async () => {
      await post("/v1/me/password/reset", formData(form), { quiet: true });
      done.textContent = "If an account has this address, a reset link is on its way.";
    });
  });
  main.append(h("h1", {}, "Forgotten password"), form, h("p", {}, h("a", { href: "#/login" }, "Back to log in")));
  form.querySelector("input").focus();
}

// The reset email's link: `/reset-password?token=…`.
export function resetView(main) {
  const token = new URLSearchParams(location.search).get("token") || "";
  const errors = errorLine();
  const button = h("button", { class: "primary", type: "submit" }, "Set password");
  const form = h("form", { class: "stack", "aria-label": "Choose a new password" },
    h("label", {}, "New password (8 characters or more)", h("input", { name: "new_password", type: "password",
      minlength: "8", required: true, autocomplete: "new-password" })), button, errors);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(button, errors, async () => {
      await post("/v1/me/password/reset/confirm", { ...formData(form), token }, { quiet: true });
      history.replaceState(null, "", "/#/login"); // drop the used token from the address bar
      go("#/login");
    });
  });
  main.replaceChildren(h("h1", {}, "Choose a new password"),
    token ? form : h("p", { class: "error" }, "This link has no reset token."));
  form.querySelector("input").focus();
}
