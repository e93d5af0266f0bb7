// Keeps the tabs of one browser in agreement about the session.
//
// - A tab that logs out tells the others at once (BroadcastChannel), and every logged-in
//   page announces who is logged in and the active platform when it loads, so a login or a
//   platform switch in one tab shows in the others straight away.
// - Every logged-in tab asks GET /api/session/status once a second. That read is not
//   activity (it does not extend the idle timeout), and it is how a tab notices a session
//   ended elsewhere: revoked from another device or by an admin, or expired.
// - A message for the next page (e.g. "You are logged out") survives the navigation in
//   sessionStorage, because the logout response clears the site's cookies.
// - A logout also leaves a short-lived note in localStorage (written before the logout
//   request leaves): a tab whose status check sees the session gone before the
//   BroadcastChannel message arrived still knows it was a logout in another tab, not
//   an ended session. (Chromium can deliver that message late, or drop it, when the
//   sending page unloads at once.)
(() => {
  "use strict";
  const CHECK_EVERY_MS = 1000;
  const LOGOUT_NOTE = "tessera-logout";
  const LOGOUT_NOTE_FRESH_MS = 10000;
  const body = document.body;
  const channel = "BroadcastChannel" in window ? new BroadcastChannel("tessera-session") : null;
  const announce = (message) => channel && channel.postMessage(message);

  const showFlash = (text) => {
    const region = document.getElementById("flash");
    if (!region) return;
    const line = document.createElement("p");
    line.className = "flash";
    line.textContent = text;
    region.replaceChildren(line);
  };
  const carried = sessionStorage.getItem("tessera-flash");
  if (carried) {
    sessionStorage.removeItem("tessera-flash");
    showFlash(carried);
  }
  // The first reason to leave wins: a status check still in flight must not replace
  // "You logged out in another tab" with "Your session has ended" on the way out.
  let leaving = false;
  const leave = (message) => {
    if (leaving) return;
    leaving = true;
    sessionStorage.setItem("tessera-flash", message);
    window.location.assign("/login");
  };

  if (body.dataset.session !== "member") {
    // A login or register page: when another tab logs in, follow it.
    if (channel) {
      channel.onmessage = (event) => {
        if (event.data && event.data.type === "state") window.location.assign("/dashboard");
      };
    }
    return;
  }

  const user = body.dataset.userId;
  const badge = document.getElementById("active-platform");
  const state = () => ({
    type: "state",
    user,
    platform: body.dataset.platformId || "",
    platformName: badge ? badge.textContent : "",
  });
  const showPlatform = (id, name) => {
    body.dataset.platformId = id;
    if (badge) badge.textContent = name;
  };

  const loggedOutElsewhere = () => {
    try {
      const note = JSON.parse(localStorage.getItem(LOGOUT_NOTE) || "null");
      return !!note && note.user === user && Date.now() - note.at < LOGOUT_NOTE_FRESH_MS;
    } catch (_) {
      return false;
    }
  };
  const sessionGone = () =>
    leave(loggedOutElsewhere() ? "You logged out in another tab." : "Your session has ended. Please log in again.");
  window.addEventListener("storage", (event) => {
    if (event.key === LOGOUT_NOTE && loggedOutElsewhere()) leave("You logged out in another tab.");
  });

  if (channel) {
    channel.onmessage = (event) => {
      const message = event.data || {};
      if (message.type === "logout") {
        leave("You logged out in another tab.");
      } else if (message.type === "state") {
        if (message.user !== user) window.location.reload();
        else if (message.platform !== (body.dataset.platformId || "")) showPlatform(message.platform, message.platformName);
      }
    };
  }
  announce(state());

  document.querySelectorAll('form[action="/logout"]').forEach((form) => {
    form.addEventListener("submit", () => {
      leaving = true;
      sessionStorage.setItem("tessera-flash", "You are logged out.");
      try {
        localStorage.setItem(LOGOUT_NOTE, JSON.stringify({ user, at: Date.now() }));
      } catch (_) {
        // Storage refused (private mode quota): the BroadcastChannel message still goes.
      }
      announce({ type: "logout" });
    });
  });

  let checking = false;
  const check = async () => {
    if (checking || leaving) return;
    checking = true;
    try {
      const response = await fetch("/api/session/status", {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      // 503: the session store is down for a moment; the next check tries again.
      if (!response.ok) return;
      const status = await response.json();
      if (!status.authenticated || String(status.user_id) !== user) {
        sessionGone();
      } else if (String(status.active_platform_id ?? "") !== (body.dataset.platformId || "")) {
        // Switched in another tab whose announcement this tab missed: show the truth.
        window.location.reload();
      }
    } catch (_) {
      // Offline or the server restarting: try again at the next tick.
    } finally {
      checking = false;
    }
  };
  setInterval(check, CHECK_EVERY_MS);
})();
