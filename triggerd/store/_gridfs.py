"""The MongoDB store's blobs as GridFS files, written and read in batches.

The files follow the GridFS spec (``<bucket>.files`` + ``<bucket>.chunks``, the spec's
indexes), so ``mongofiles`` or pymongo's GridFSBucket read them. They are written
directly rather than through GridFSBucket, which spends four commands a file: here all
the blobs of one write take two commands, and all the blobs one read needs two more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bson import ObjectId
from pymongo.collection import Collection
from pymongo.database import Database

__all__ = ["Blob", "GridFiles"]

CHUNK = 255 * 1024  # GridFS's default chunk size
Blob = tuple[ObjectId, bytes, str]  # (file id, signed pickle, what it holds)


@dataclass(frozen=True)
class GridFiles:
    """One GridFS bucket; each file names its run in ``metadata.run_id``."""

    files: Collection
    chunks: Collection

    @classmethod
    def create(cls, db: Database, bucket: str) -> GridFiles:
        """The bucket, with the spec's indexes and the one ``of_run`` needs."""
        grid = cls(db[f"{bucket}.files"], db[f"{bucket}.chunks"])
        grid.chunks.create_index([("files_id", 1), ("n", 1)], unique=True)
        grid.files.create_index([("filename", 1), ("uploadDate", 1)])
        grid.files.create_index("metadata.run_id")
        return grid

    def upload(self, run_id: str, blobs: list[Blob]) -> None:
        """Chunks first, then the files documents: a file is listed only once complete."""
        now = datetime.now(UTC)
        self.chunks.insert_many(
            {"files_id": file_id, "n": n, "data": body[start : start + CHUNK]}
            for file_id, body, _ in blobs
            for n, start in enumerate(range(0, len(body), CHUNK))
        )
        self.files.insert_many(
            {
                "_id": file_id,
                "length": len(body),
                "chunkSize": CHUNK,
                "uploadDate": now,
                "filename": what,
                "metadata": {"run_id": run_id},
            }
            for file_id, body, what in blobs
        )

    def download(self, run_id: str, file_ids: list[ObjectId]) -> dict[ObjectId, bytes]:
        """The bodies of the run's complete files among ``file_ids``; others are left out."""
        query = {"_id": {"$in": file_ids}, "metadata.run_id": run_id}
        lengths = {file["_id"]: file["length"] for file in self.files.find(query, {"length": 1})}
        pieces: dict[ObjectId, list[bytes]] = {file_id: [] for file_id in lengths}
        fields = {"_id": 0, "files_id": 1, "data": 1}
        for chunk in self.chunks.find({"files_id": {"$in": list(lengths)}}, fields).sort(
            [("files_id", 1), ("n", 1)]
        ):
            pieces[chunk["files_id"]].append(chunk["data"])
        bodies = {file_id: b"".join(parts) for file_id, parts in pieces.items()}
        return {file_id: body for file_id, body in bodies.items() if len(body) == lengths[file_id]}

    def of_run(self, run_id: str) -> list[ObjectId]:
        return [file["_id"] for file in self.files.find({"metadata.run_id": run_id}, {"_id": 1})]

    def delete(self, file_ids: list[ObjectId]) -> None:
        if file_ids:
            self.files.delete_many({"_id": {"$in": file_ids}})
            self.chunks.delete_many({"files_id": {"$in": file_ids}})
