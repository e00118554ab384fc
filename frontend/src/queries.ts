// Every request the UI makes of trawl-api: the query keys the cache keeps them under, how often
// each is refreshed, and the hooks pages read them through. Pages never build a URL of the API.

import { useEffect, useMemo, useRef, useState } from "react";
import { type QueryKey, useInfiniteQuery, useQuery, useQueryClient } from "@tanstack/react-query";
import {
  type DnsEvent,
  type Flow,
  getJson,
  type HttpEvent,
  type Packet,
  type PacketDetail,
  type Page,
  type ServiceMap,
  type Session,
  type Stats,
  type TlsEvent,
  type WhoAmI,
  withToken,
} from "./api";
import { apiQuery, type Filters } from "./filters";
import { mergePackets } from "./live";

export type EventRoute = "dns" | "http" | "tls";
export type FlowSort = "last_seen" | "bytes" | "packets";

export const keys = {
  sessions: () => ["sessions"] as const,
  session: (namespace: string, name: string) => ["sessions", namespace, name] as const,
  whoami: () => ["whoami"] as const,
  stats: (filters: Filters) => ["stats", filters] as const,
  serviceMap: (filters: Filters) => ["service-map", filters] as const,
  flows: (filters: Filters, sort: FlowSort) => ["flows", filters, sort] as const,
  events: (route: EventRoute, protocol: string | undefined, filters: Filters) =>
    ["events", route, protocol ?? "", filters] as const,
  packet: (id: number) => ["packet", id] as const,
  packetHistory: (filters: Filters) => ["packets", "history", filters] as const,
  livePackets: (filters: Filters) => ["packets", "live", filters] as const,
};

/** Sessions and statistics move while a capture runs; lists of stored rows move slower. */
const LIVE_REFRESH = 5000;
const LIST_REFRESH = 10_000;
const EVENT_PAGE = 200;
const PACKET_PAGE = 500;

export function useSessions() {
  return useQuery({
    queryKey: keys.sessions(),
    queryFn: ({ signal }) => getJson<{ items: Session[] }>("/api/v1/sessions", signal),
    refetchInterval: LIVE_REFRESH,
  });
}

export function useSession(namespace: string, name: string) {
  return useQuery({
    queryKey: keys.session(namespace, name),
    queryFn: ({ signal }) =>
      getJson<Session>(`/api/v1/sessions/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`, signal),
    refetchInterval: LIVE_REFRESH,
  });
}

export function useWhoAmI() {
  return useQuery({
    queryKey: keys.whoami(),
    queryFn: ({ signal }) => getJson<WhoAmI>("/api/v1/whoami", signal),
    staleTime: 60_000,
    retry: false,
  });
}

export function useStats(filters: Filters) {
  return useQuery({
    queryKey: keys.stats(filters),
    queryFn: ({ signal }) => getJson<Stats>(`/api/v1/stats?${apiQuery(filters)}`, signal),
    refetchInterval: LIVE_REFRESH,
  });
}

export function useServiceMap(filters: Filters) {
  return useQuery({
    queryKey: keys.serviceMap(filters),
    queryFn: ({ signal }) => getJson<ServiceMap>(`/api/v1/service-map?${apiQuery(filters)}`, signal),
    refetchInterval: LIST_REFRESH,
  });
}

export function usePacketDetail(id: number) {
  return useQuery({
    queryKey: keys.packet(id),
    queryFn: ({ signal }) => getJson<PacketDetail>(`/api/v1/packets/${id}`, signal),
    // A stored packet never changes.
    staleTime: Infinity,
  });
}

/** A list route read page by page (`next_cursor`), its rows in order, and whether more follow. */
function usePaged<T>(
  queryKey: QueryKey,
  path: string,
  filters: Filters,
  extra: Record<string, string | number | undefined>,
  refresh: { refetchInterval?: number; staleTime?: number },
) {
  const query = useInfiniteQuery({
    queryKey,
    queryFn: ({ pageParam, signal }) =>
      getJson<Page<T>>(`${path}?${apiQuery(filters, { ...extra, cursor: pageParam })}`, signal),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last) => last.next_cursor ?? undefined,
    ...refresh,
  });
  const rows = useMemo(() => query.data?.pages.flatMap((page) => page.items) ?? [], [query.data]);
  return { ...query, rows };
}

export type Paged<T> = ReturnType<typeof usePaged<T>>;

export function useFlows(filters: Filters, sort: FlowSort) {
  return usePaged<Flow>(keys.flows(filters, sort), "/api/v1/flows", filters, { sort, limit: EVENT_PAGE }, {
    refetchInterval: LIST_REFRESH,
  });
}

export function useEvents(route: EventRoute, protocol: string | undefined, filters: Filters) {
  return usePaged<DnsEvent | HttpEvent | TlsEvent>(
    keys.events(route, protocol, filters),
    `/api/v1/events/${route}`,
    filters,
    { limit: EVENT_PAGE, protocol },
    { refetchInterval: LIST_REFRESH },
  );
}

/**
 * Stored packets, newest first: pages of history (older as the list scrolls; new ones come from
 * the live stream, so history is not refetched) merged with the packets the live stream put in
 * the cache. Paused, the stream's packets wait aside and are counted.
 */
export function usePackets(filters: Filters) {
  const history = usePaged<Packet>(
    keys.packetHistory(filters),
    "/api/v1/packets",
    filters,
    { limit: PACKET_PAGE },
    { staleTime: Infinity },
  );
  const { rows: streamed, ...stream } = useLiveStream(filters);
  const rows = useMemo(() => mergePackets(history.rows, streamed), [history.rows, streamed]);
  return { history, rows, ...stream };
}

/** How often packets from the stream reach the cache: one render per flush, not per packet. */
const FLUSH_MS = 250;

/** The session's packets as they are stored (`/api/v1/stream`), fed into the query cache. */
function useLiveStream(filters: Filters) {
  const client = useQueryClient();
  const key = keys.livePackets(filters);
  const live = useQuery({
    queryKey: key,
    queryFn: () => client.getQueryData<Packet[]>(key) ?? [],
    initialData: [] as Packet[],
    staleTime: Infinity,
    enabled: false,
  });
  const [paused, setPaused] = useState(false);
  const [waiting, setWaiting] = useState(0);
  const arrived = useRef<Packet[]>([]);
  const pausedRef = useRef(paused);
  pausedRef.current = paused;
  const keyRef = useRef(key);
  keyRef.current = key;

  const session = filters.session;
  const query = apiQuery(filters);
  useEffect(() => {
    if (!session) return;
    const source = new EventSource(withToken(`/api/v1/stream?${query}`));
    source.addEventListener("packet", (event) => {
      arrived.current.push(JSON.parse((event as MessageEvent).data) as Packet);
    });
    const flush = setInterval(() => {
      if (arrived.current.length === 0) return;
      if (pausedRef.current) {
        setWaiting(arrived.current.length);
        return;
      }
      const incoming = arrived.current;
      arrived.current = [];
      client.setQueryData<Packet[]>(keyRef.current, (rows = []) => mergePackets(rows, incoming));
    }, FLUSH_MS);
    return () => {
      source.close();
      clearInterval(flush);
      arrived.current = [];
    };
  }, [client, session, query]);

  return {
    rows: live.data,
    live: !paused,
    waiting,
    pause: () => setPaused(true),
    resume: () => {
      setWaiting(0);
      setPaused(false);
    },
  };
}
