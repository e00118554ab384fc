import type { components } from './schema';

type Schemas = components['schemas'];

// The trawl-api client: responses typed from the API's OpenAPI document (schema.d.ts, made by
// `npm run api-types` from openapi.json, which a Rust test keeps equal to the API's), the bearer token (kept for this browser tab only), and
// errors that carry the API's message and the parameter at fault.

export type PacketCounts = Schemas['PacketCounts'];

export type Condition = Schemas['Condition'];

export type Session = Schemas['Session'];

export type Endpoint = Schemas['Endpoint'];

export type Packet = Schemas['Packet'];

export type PacketDetail = Schemas['PacketDetail'];

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export type Flow = Schemas['Flow'];

export type MapNode = Schemas['MapNode'];

export type MapEdge = Schemas['MapEdge'];

export type ServiceMap = Schemas['ServiceMap'];

export type Count = Schemas['Count'];

export type Stats = Schemas['Stats'];

export type WhoAmI = Schemas['WhoAmI'];

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

/**
 * `kubectl trawl open` hands the user's token over in the address's fragment (`#token=...`),
 * which browsers never send to a server: keep it for this tab and take it out of the address bar.
 */
export function adoptTokenFromAddress(location: Location, history: History): void {
  const token = /(?:^#|&)token=([^&]+)/.exec(location.hash)?.[1];
  if (!token) return;
  setToken(decodeURIComponent(token));
  history.replaceState(null, "", location.pathname + location.search);
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

export type EventEndpoints = Schemas['EventEndpoints'];

export type DnsEvent = Schemas['DnsEvent'];

export type HttpEvent = Schemas['HttpEvent'];

export type TlsEvent = Schemas['TlsEvent'];
