// The trawl-api client: typed responses, the bearer token (kept for this browser tab only), and
// errors that carry the API's message and the parameter at fault.

export interface PacketCounts {
  captured: number;
  dropped: number;
  dropped_by_reason: Record<string, number>;
  stored: number;
  deduplicated: number;
}

export interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}

export interface Session {
  namespace: string;
  name: string;
  key: string;
  uid: string;
  phase: string | null;
  ready: boolean;
  message: string | null;
  conditions: Condition[];
  sniffers: { desired: number; ready: number } | null;
  parsers: { replicas: number; desiredReplicas: number } | null;
  backlog: number | null;
  packets: PacketCounts;
  spec: Record<string, unknown>;
  start_time: string | null;
  completion_time: string | null;
  created_at: string;
  updated_at: string;
  deleted_at: string | null;
}

/** Who an address was at the packet's (or flow's) time. */
export interface Endpoint {
  /** `pod`, `service`, `node`, or `dns` (named by a captured DNS answer). */
  kind: string;
  namespace: string | null;
  name: string;
  workload_kind: string | null;
  workload: string | null;
  node: string | null;
}

export interface Packet {
  id: number;
  session: string;
  ts: string;
  node: string;
  interface: string;
  original_len: number;
  captured_len: number;
  src: string | null;
  dst: string | null;
  src_port: number | null;
  dst_port: number | null;
  transport: string | null;
  l7: string | null;
  l7_name: string | null;
  tcp_flags: number | null;
  vlan: number | null;
  malformed: string | null;
  payload_kept: boolean;
  /** One line in Wireshark's manner, from the stored bytes. */
  info: string;
  src_endpoint: Endpoint | null;
  dst_endpoint: Endpoint | null;
}

export interface PacketDetail extends Packet {
  layers: Record<string, unknown>[];
  data_hex: string;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface Flow {
  session: string;
  flow_key: string;
  transport: string | null;
  l7: string | null;
  l7_name: string | null;
  src: string | null;
  src_port: number | null;
  dst: string | null;
  dst_port: number | null;
  first_seen: string;
  last_seen: string;
  packets: number;
  bytes: number;
  packets_sent: number;
  bytes_sent: number;
  packets_received: number;
  bytes_received: number;
  tcp_flags: number;
  packets_filter: string;
  src_endpoint: Endpoint | null;
  dst_endpoint: Endpoint | null;
}

export interface MapNode {
  id: string;
  /** `workload`, `pod`, `service`, `node`, `dns` or `address`. */
  kind: string;
  namespace: string | null;
  workload_kind: string | null;
}

export interface MapEdge {
  from: string;
  to: string;
  flows: number;
  packets: number;
  bytes: number;
  l7: string[];
  http_errors: number;
  dns_errors: number;
}

export interface ServiceMap {
  nodes: MapNode[];
  edges: MapEdge[];
}

export interface Count {
  name: string;
  packets: number;
  bytes: number;
}

export interface Stats {
  since: string;
  until: string;
  bucket_seconds: number;
  packets: number;
  bytes: number;
  timeline: { start: string; packets: number; bytes: number }[];
  protocols: Count[];
  top_talkers: Count[];
  top_workloads: Count[];
  top_dns_names: Count[];
  top_http_hosts: Count[];
  top_tls_server_names: Count[];
}

/** `GET /api/v1/whoami`. */
export interface WhoAmI {
  name: string;
  groups: string[];
}

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public parameter?: string,
  ) {
    super(message);
  }
}

const TOKEN_KEY = "trawl.token";
let tokenListeners: (() => void)[] = [];

export function getToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token: string | null): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  tokenListeners.forEach((listener) => listener());
}

export function onTokenChange(listener: () => void): () => void {
  tokenListeners.push(listener);
  return () => {
    tokenListeners = tokenListeners.filter((l) => l !== listener);
  };
}

/** GET a JSON resource of the API (same origin only). */
export async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  const token = getToken();
  const response = await fetch(path, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
    signal,
  });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    let parameter: string | undefined;
    try {
      const body = await response.json();
      message = body?.error?.message ?? message;
      parameter = body?.error?.parameter;
    } catch {
      // not JSON: keep the status line
    }
    throw new ApiError(response.status, message, parameter);
  }
  return (await response.json()) as T;
}

/** A URL that carries the token in the query string, for EventSource and downloads (no headers there). */
export function withToken(path: string): string {
  const token = getToken();
  if (!token) return path;
  return `${path}${path.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(token)}`;
}

/** Both ends of an L7 event: the client asked, the server answered. */
export interface EventEndpoints {
  id: number;
  session: string;
  ts: string;
  client: string;
  client_port: number;
  server: string;
  server_port: number;
}

export interface DnsEvent extends EventEndpoints {
  transport: string;
  transaction: number;
  query: string | null;
  query_type: string | null;
  rcode: string | null;
  answers: string[] | null;
  rtt_ms: number | null;
}

export interface HttpEvent extends EventEndpoints {
  transport: string;
  method: string | null;
  host: string | null;
  path: string | null;
  user_agent: string | null;
  status: number | null;
  latency_ms: number | null;
}

export interface TlsEvent extends EventEndpoints {
  sni: string | null;
  alpn: string[];
  version: string | null;
  ja4: string | null;
}
