// Preloaded into the conformance suite's Node (NODE_OPTIONS=--require): every server it starts
// listens on 127.0.0.1, whatever host it asked for (none: all interfaces).
//
// Such a listen() with a host resolves it first (a dns.lookup callback, a tick later), where a
// host-less one binds at once; the suite's client scenarios read server.address() right after
// listen(). So the lookup of the loopback literal answers synchronously here.
"use strict";
const net = require("net");
const dns = require("dns");
const lookup = dns.lookup;
dns.lookup = function (hostname, ...rest) {
  const callback = rest[rest.length - 1];
  const options = rest.length === 2 ? rest[0] : {};
  if (hostname === "127.0.0.1" && typeof callback === "function") {
    if (options && options.all) callback(null, [{ address: "127.0.0.1", family: 4 }]);
    else callback(null, "127.0.0.1", 4);
    return {};
  }
  return lookup.call(this, hostname, ...rest);
};
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (first !== null && typeof first === "object" && !Array.isArray(first)) {
    if (first.path === undefined && first.handle === undefined && first.fd === undefined) {
      args[0] = { ...first, host: "127.0.0.1" };
    }
  } else if (args.length === 0 || typeof first === "function") {
    args.unshift(0, "127.0.0.1");
  } else if (typeof first === "number" || /^\d+$/.test(String(first))) {
    if (typeof args[1] === "string") args[1] = "127.0.0.1";
    else args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
