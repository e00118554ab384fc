import type { Paged } from "../queries";

/** The button under a paged list: the next page of `what`, while there is one. */
export function LoadMore<T>({ list, what }: { list: Paged<T>; what: string }) {
  if (!list.hasNextPage) return null;
  return (
    <button type="button" onClick={() => void list.fetchNextPage()} disabled={list.isFetchingNextPage}>
      {list.isFetchingNextPage ? "Loading…" : `Load more ${what}`}
    </button>
  );
}
