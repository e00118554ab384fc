import { useCallback, useMemo } from "react";
import { useSearchParams } from "react-router-dom";
import { type Filters, filtersFromSearch, filtersToSearch } from "./filters";

/** The shared filters, read from and written to the URL. */
export function useFilters(): [Filters, (next: Filters) => void] {
  const [search, setSearch] = useSearchParams();
  const filters = useMemo(() => filtersFromSearch(search), [search]);
  const setFilters = useCallback(
    (next: Filters) => setSearch((current) => filtersToSearch(next, current)),
    [setSearch],
  );
  return [filters, setFilters];
}
