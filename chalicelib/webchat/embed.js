/* omnihub web chat: add the chat to any page with
 *   <script src="https://YOUR-HUB/webchat/embed.js" async></script>
 * Options, as attributes of that tag:
 *   data-title="Chat with Acme"      the chat's heading and the button's label
 *   data-identity-token="<JWT>"      a signed-in visitor: an HS256 JWT your server signs with
 *                                    WEBCHAT_JWT_SECRET (sub = your customer id; email, phone, name optional)
 *   data-open="true"                 open the chat when the page loads
 *   data-target="#selector"          put the chat inside that element instead of a floating window
 * Or from your own code: OmnihubChat.open(), .close(), .toggle(), .identify(jwt).
 * The chat runs in an iframe served by the hub; the JWT is handed to it with postMessage,
 * never in a URL. */
(function () {
  "use strict";
  if (window.OmnihubChat) { return; }
  var script = document.currentScript;
  if (!script || !script.src) { return; }
  var hub = script.src.replace(/\/webchat\/embed\.js(?:[?#].*)?$/, "");
  var hubOrigin = new URL(hub, location.href).origin;
  var title = (script.getAttribute("data-title") || "Chat with us").slice(0, 60);
  var identity = script.getAttribute("data-identity-token") || null;
  var targetSelector = script.getAttribute("data-target");
  var frame = null;
  var panel = null;
  var button = null;
  var isOpen = false;

  function frameUrl() {
    var query = "embed=1&title=" + encodeURIComponent(title) + (identity ? "&auth=1" : "");
    return hub + "/webchat?" + query;
  }
  function makeFrame() {
    frame = document.createElement("iframe");
    frame.src = frameUrl();
    frame.title = title;
    frame.id = "omnihub-chat-frame";
    frame.setAttribute("allow", "clipboard-write");
    Object.assign(frame.style, { border: "0", width: "100%", height: "100%", display: "block", colorScheme: "normal" });
    return frame;
  }
  function sendIdentity() {
    if (frame && frame.contentWindow && identity) {
      frame.contentWindow.postMessage({ type: "omnihub:identify", token: identity }, hubOrigin);
    }
  }
  window.addEventListener("message", function (event) {
    if (!frame || event.origin !== hubOrigin || event.source !== frame.contentWindow) { return; }
    if (event.data && event.data.type === "omnihub:ready") { sendIdentity(); }
  });

  function inline(target) {
    target.appendChild(makeFrame());
    isOpen = true;
  }
  function floating() {
    button = document.createElement("button");
    button.type = "button";
    button.textContent = title;
    button.setAttribute("aria-expanded", "false");
    button.setAttribute("aria-controls", "omnihub-chat-panel");
    Object.assign(button.style, {
      position: "fixed", right: "20px", bottom: "20px", zIndex: "2147483000", padding: "12px 18px",
      font: "600 15px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", color: "#fff",
      background: "#0b5cd5", border: "0", borderRadius: "24px", boxShadow: "0 4px 14px rgba(0,0,0,.25)", cursor: "pointer"
    });
    button.addEventListener("click", function () { api.toggle(); });
    panel = document.createElement("div");
    panel.id = "omnihub-chat-panel";
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-label", title);
    Object.assign(panel.style, {
      position: "fixed", right: "20px", bottom: "80px", zIndex: "2147483000", width: "min(380px, calc(100vw - 40px))",
      height: "min(560px, calc(100vh - 110px))", borderRadius: "14px", overflow: "hidden",
      boxShadow: "0 8px 30px rgba(0,0,0,.3)", background: "#fff", display: "none"
    });
    panel.addEventListener("keydown", function (event) { if (event.key === "Escape") { api.close(); button.focus(); } });
    document.body.appendChild(panel);
    document.body.appendChild(button);
  }

  var api = {
    open: function () {
      if (!panel) { return; }
      if (!frame) { panel.appendChild(makeFrame()); }
      panel.style.display = "block";
      button.setAttribute("aria-expanded", "true");
      isOpen = true;
      frame.focus();
    },
    close: function () {
      if (!panel) { return; }
      panel.style.display = "none";
      button.setAttribute("aria-expanded", "false");
      isOpen = false;
    },
    toggle: function () { if (isOpen) { api.close(); } else { api.open(); } },
    identify: function (token) { identity = token || null; sendIdentity(); }
  };
  window.OmnihubChat = api;

  function start() {
    var target = targetSelector ? document.querySelector(targetSelector) : null;
    if (target) { inline(target); return; }
    floating();
    if (script.getAttribute("data-open") === "true") { api.open(); }
  }
  if (document.body) { start(); } else { document.addEventListener("DOMContentLoaded", start); }
})();
