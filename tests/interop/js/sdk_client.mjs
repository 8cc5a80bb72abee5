// Drive the gateway with the official TypeScript MCP SDK: connect, list tools, call one tool.
//
//   node sdk_client.mjs <node_modules dir> <v1|v2> <url> <legacy|2026-07-28> <tool> <arguments JSON>
//
// v1 is `@modelcontextprotocol/sdk` (speaks up to 2025-11-25, sessions only); v2 is
// `@modelcontextprotocol/client` (legacy by default, the 2026-07-28 era when pinned). The bearer
// token, if any, comes from the environment (MCP_BEARER), never from the command line.
// Prints one JSON object on stdout: what the client saw, or the error it reported (exit status 1).

import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modules, line, url, era, tool, argumentsJson] = process.argv.slice(2);
const bearer = process.env.MCP_BEARER || undefined;
const load = (path) => import(pathToFileURL(join(modules, path)).href);

async function viaV1() {
  if (era !== "legacy") throw new Error(`@modelcontextprotocol/sdk v1 cannot speak ${era}`);
  const { Client } = await load("@modelcontextprotocol/sdk/dist/esm/client/index.js");
  const { StreamableHTTPClientTransport } = await load("@modelcontextprotocol/sdk/dist/esm/client/streamableHttp.js");
  const headers = bearer ? { Authorization: `Bearer ${bearer}` } : {};
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  const client = new Client({ name: "interop-sdk-v1", version: "1.0.0" });
  return { client, transport, version: () => transport.protocolVersion, report: {} };
}

async function viaV2() {
  const sdk = await load("@modelcontextprotocol/client/dist/index.mjs");
  const report = {};
  // The minimal bearer AuthProvider of v2: a token, and what to do on 401 (report the challenge as parsed by the SDK).
  const authProvider = {
    token: async () => bearer,
    onUnauthorized: async ({ response }) => {
      report.challenge = { status: response.status, ...sdk.extractWWWAuthenticateParams(response) };
      report.challenge.resourceMetadataUrl = report.challenge.resourceMetadataUrl?.href;
      throw new sdk.UnauthorizedError("the gateway asked for a token");
    },
  };
  const transport = new sdk.StreamableHTTPClientTransport(new URL(url), { authProvider });
  const mode = era === "legacy" ? "legacy" : { pin: era };
  const client = new sdk.Client({ name: "interop-sdk-v2", version: "1.0.0" }, { versionNegotiation: { mode } });
  return { client, transport, version: () => client.getNegotiatedProtocolVersion(), report };
}

const { client, transport, version, report } = await (line === "v1" ? viaV1() : viaV2());
let status = 0;
try {
  await client.connect(transport);
  const tools = await client.listTools();
  const result = await client.callTool({ name: tool, arguments: JSON.parse(argumentsJson) });
  Object.assign(report, {
    protocolVersion: version(),
    sessionId: transport.sessionId ?? null,
    tools: tools.tools.map((t) => t.name),
    result,
  });
} catch (error) {
  status = 1;
  report.error = { name: error?.constructor?.name, message: String(error?.message ?? error), code: error?.code };
} finally {
  await client.close().catch(() => {});
}
process.stdout.write(JSON.stringify(report) + "\n");
process.exitCode = status;
