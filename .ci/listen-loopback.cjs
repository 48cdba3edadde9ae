// Loaded with node --require: keep servers that listen without a host on loopback.
// A host-less listen() binds at once, and the suite reads server.address() right after it; a
// listen() with a host resolves it first (a dns.lookup callback, a tick later). So the lookup of
// the loopback literal answers synchronously, as a host-less listen would.
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
  if (typeof args[0] === "number" || (typeof args[0] === "string" && /^\d+$/.test(args[0]))) {
    if (args.length === 1 || typeof args[1] === "function" || typeof args[1] === "number") {
      // listen(port[, backlog][, cb]) -> listen(port, "127.0.0.1", ...)
      args.splice(1, 0, "127.0.0.1");
    }
  } else if (args[0] && typeof args[0] === "object" && !("path" in args[0]) && !args[0].host) {
    args[0] = { ...args[0], host: "127.0.0.1" };
  } else if (args.length === 0 || typeof args[0] === "function") {
    args.unshift(0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
