// The filters every data view shares, kept in the URL so that a view can be shared or bookmarked.

import type { operations } from "./schema";

/**
 * The filter parameters every data route accepts, named by the API's OpenAPI document: the
 * service map takes exactly them (the other routes add paging), so a filter added to or renamed
 * in the API fails the type check here until the UI knows it.
 */
type ApiFilterKey = keyof NonNullable<operations["getServiceMap"]["parameters"]["query"]>;

export const FILTER_KEYS = [
  "session",
  "since",
  "until",
  "namespace",
  "workload",
  "pod",
  "service",
  "src",
  "dst",
  "host",
  "port",
  "protocol",
  "q",
] as const satisfies readonly ApiFilterKey[];
export type FilterKey = (typeof FILTER_KEYS)[number];
// Every filter of the API is listed above (a missing one makes this `never`, which fails).
const everyApiFilterListed: [Exclude<ApiFilterKey, FilterKey>] extends [never] ? true : never = true;
void everyApiFilterListed;
export type Filters = Partial<Record<FilterKey, string>>;

/** The filters present (and not blank) in a URL's query string. */
export function filtersFromSearch(search: URLSearchParams): Filters {
  const filters: Filters = {};
  for (const key of FILTER_KEYS) {
    const value = search.get(key)?.trim();
    if (value) filters[key] = value;
  }
  return filters;
}

/** A query string for the filters, keeping other parameters of `base` (such as `packet` or `sort`). */
export function filtersToSearch(filters: Filters, base?: URLSearchParams): URLSearchParams {
  const search = new URLSearchParams(base);
  for (const key of FILTER_KEYS) {
    const value = filters[key]?.trim();
    if (value) search.set(key, value);
    else search.delete(key);
  }
  return search;
}

/** `key=value&...` of the filters plus `extra`, for an API request. */
export function apiQuery(filters: Filters, extra: Record<string, string | number | undefined> = {}): string {
  const search = filtersToSearch(filters);
  for (const [key, value] of Object.entries(extra)) {
    if (value !== undefined && value !== "") search.set(key, String(value));
  }
  return search.toString();
}

/** Splits a `namespace/name` session key. */
export function splitSession(key: string): { namespace: string; name: string } | null {
  const [namespace, name, ...rest] = key.split("/");
  if (!namespace || !name || rest.length > 0) return null;
  return { namespace, name };
}
