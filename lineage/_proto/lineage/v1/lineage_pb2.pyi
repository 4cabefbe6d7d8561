import datetime

from google.longrunning import operations_pb2 as _operations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_ROLE_UNSPECIFIED: _ClassVar[ModelRole]
    MODEL_ROLE_TEACHER: _ClassVar[ModelRole]
    MODEL_ROLE_REFERENCE: _ClassVar[ModelRole]

class AccessMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCESS_MODE_UNSPECIFIED: _ClassVar[AccessMode]
    ACCESS_MODE_FULL: _ClassVar[AccessMode]
    ACCESS_MODE_LOGPROBS: _ClassVar[AccessMode]
    ACCESS_MODE_TEXT: _ClassVar[AccessMode]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_DERIVED: _ClassVar[Verdict]
    VERDICT_NOT_DERIVED: _ClassVar[Verdict]
    VERDICT_INCONCLUSIVE: _ClassVar[Verdict]

class BatchScanState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_SCAN_STATE_UNSPECIFIED: _ClassVar[BatchScanState]
    BATCH_SCAN_STATE_PENDING: _ClassVar[BatchScanState]
    BATCH_SCAN_STATE_RUNNING: _ClassVar[BatchScanState]
    BATCH_SCAN_STATE_SUCCEEDED: _ClassVar[BatchScanState]
    BATCH_SCAN_STATE_FAILED: _ClassVar[BatchScanState]
    BATCH_SCAN_STATE_CANCELLED: _ClassVar[BatchScanState]
MODEL_ROLE_UNSPECIFIED: ModelRole
MODEL_ROLE_TEACHER: ModelRole
MODEL_ROLE_REFERENCE: ModelRole
ACCESS_MODE_UNSPECIFIED: AccessMode
ACCESS_MODE_FULL: AccessMode
ACCESS_MODE_LOGPROBS: AccessMode
ACCESS_MODE_TEXT: AccessMode
VERDICT_UNSPECIFIED: Verdict
VERDICT_DERIVED: Verdict
VERDICT_NOT_DERIVED: Verdict
VERDICT_INCONCLUSIVE: Verdict
BATCH_SCAN_STATE_UNSPECIFIED: BatchScanState
BATCH_SCAN_STATE_PENDING: BatchScanState
BATCH_SCAN_STATE_RUNNING: BatchScanState
BATCH_SCAN_STATE_SUCCEEDED: BatchScanState
BATCH_SCAN_STATE_FAILED: BatchScanState
BATCH_SCAN_STATE_CANCELLED: BatchScanState

class Model(_message.Message):
    __slots__ = ("name", "role", "uri", "identity", "suite_name", "suite_hash", "create_time", "index_id")
    class IdentityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    SUITE_NAME_FIELD_NUMBER: _ClassVar[int]
    SUITE_HASH_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    INDEX_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: ModelRole
    uri: str
    identity: _containers.ScalarMap[str, str]
    suite_name: str
    suite_hash: str
    create_time: _timestamp_pb2.Timestamp
    index_id: int
    def __init__(self, name: _Optional[str] = ..., role: _Optional[_Union[ModelRole, str]] = ..., uri: _Optional[str] = ..., identity: _Optional[_Mapping[str, str]] = ..., suite_name: _Optional[str] = ..., suite_hash: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., index_id: _Optional[int] = ...) -> None: ...

class Evidence(_message.Message):
    __slots__ = ("probe_id", "prompt", "contribution")
    PROBE_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    probe_id: str
    prompt: str
    contribution: float
    def __init__(self, probe_id: _Optional[str] = ..., prompt: _Optional[str] = ..., contribution: _Optional[float] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("teacher", "similarity", "p_value", "verdict", "raw_p_value", "statistic", "closeness", "null_mean", "null_sd", "n_references", "evidence", "p_parts")
    class PPartsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TEACHER_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    RAW_P_VALUE_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    CLOSENESS_FIELD_NUMBER: _ClassVar[int]
    NULL_MEAN_FIELD_NUMBER: _ClassVar[int]
    NULL_SD_FIELD_NUMBER: _ClassVar[int]
    N_REFERENCES_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    P_PARTS_FIELD_NUMBER: _ClassVar[int]
    teacher: str
    similarity: float
    p_value: float
    verdict: Verdict
    raw_p_value: float
    statistic: float
    closeness: float
    null_mean: float
    null_sd: float
    n_references: int
    evidence: _containers.RepeatedCompositeFieldContainer[Evidence]
    p_parts: _containers.ScalarMap[str, float]
    def __init__(self, teacher: _Optional[str] = ..., similarity: _Optional[float] = ..., p_value: _Optional[float] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., raw_p_value: _Optional[float] = ..., statistic: _Optional[float] = ..., closeness: _Optional[float] = ..., null_mean: _Optional[float] = ..., null_sd: _Optional[float] = ..., n_references: _Optional[int] = ..., evidence: _Optional[_Iterable[_Union[Evidence, _Mapping]]] = ..., p_parts: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Scan(_message.Message):
    __slots__ = ("name", "suspect", "access", "queries", "generated_tokens", "alpha", "suite_name", "suite_hash", "candidates", "create_time", "identity", "request_id", "stopped_early", "lineage_version")
    class IdentityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUSPECT_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    SUITE_NAME_FIELD_NUMBER: _ClassVar[int]
    SUITE_HASH_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STOPPED_EARLY_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    suspect: str
    access: AccessMode
    queries: int
    generated_tokens: int
    alpha: float
    suite_name: str
    suite_hash: str
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    create_time: _timestamp_pb2.Timestamp
    identity: _containers.ScalarMap[str, str]
    request_id: str
    stopped_early: bool
    lineage_version: str
    def __init__(self, name: _Optional[str] = ..., suspect: _Optional[str] = ..., access: _Optional[_Union[AccessMode, str]] = ..., queries: _Optional[int] = ..., generated_tokens: _Optional[int] = ..., alpha: _Optional[float] = ..., suite_name: _Optional[str] = ..., suite_hash: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., identity: _Optional[_Mapping[str, str]] = ..., request_id: _Optional[str] = ..., stopped_early: _Optional[bool] = ..., lineage_version: _Optional[str] = ...) -> None: ...

class CreateModelRequest(_message.Message):
    __slots__ = ("model_id", "model", "request_id")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model: Model
    request_id: str
    def __init__(self, model_id: _Optional[str] = ..., model: _Optional[_Union[Model, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "role")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    role: ModelRole
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., role: _Optional[_Union[ModelRole, str]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateScanRequest(_message.Message):
    __slots__ = ("suspect", "access", "max_queries", "alpha", "teachers", "disable_early_stop", "request_id")
    SUSPECT_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUERIES_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    TEACHERS_FIELD_NUMBER: _ClassVar[int]
    DISABLE_EARLY_STOP_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    suspect: str
    access: AccessMode
    max_queries: int
    alpha: float
    teachers: _containers.RepeatedScalarFieldContainer[str]
    disable_early_stop: bool
    request_id: str
    def __init__(self, suspect: _Optional[str] = ..., access: _Optional[_Union[AccessMode, str]] = ..., max_queries: _Optional[int] = ..., alpha: _Optional[float] = ..., teachers: _Optional[_Iterable[str]] = ..., disable_early_stop: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateScanResponse(_message.Message):
    __slots__ = ("scan",)
    SCAN_FIELD_NUMBER: _ClassVar[int]
    scan: Scan
    def __init__(self, scan: _Optional[_Union[Scan, _Mapping]] = ...) -> None: ...

class GetScanRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetScanResponse(_message.Message):
    __slots__ = ("scan",)
    SCAN_FIELD_NUMBER: _ClassVar[int]
    scan: Scan
    def __init__(self, scan: _Optional[_Union[Scan, _Mapping]] = ...) -> None: ...

class ListScansRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListScansResponse(_message.Message):
    __slots__ = ("scans", "next_page_token")
    SCANS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    scans: _containers.RepeatedCompositeFieldContainer[Scan]
    next_page_token: str
    def __init__(self, scans: _Optional[_Iterable[_Union[Scan, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CompareRequest(_message.Message):
    __slots__ = ("suspect", "teacher", "access", "max_queries", "alpha")
    SUSPECT_FIELD_NUMBER: _ClassVar[int]
    TEACHER_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUERIES_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    suspect: str
    teacher: str
    access: AccessMode
    max_queries: int
    alpha: float
    def __init__(self, suspect: _Optional[str] = ..., teacher: _Optional[str] = ..., access: _Optional[_Union[AccessMode, str]] = ..., max_queries: _Optional[int] = ..., alpha: _Optional[float] = ...) -> None: ...

class CompareResponse(_message.Message):
    __slots__ = ("scan",)
    SCAN_FIELD_NUMBER: _ClassVar[int]
    scan: Scan
    def __init__(self, scan: _Optional[_Union[Scan, _Mapping]] = ...) -> None: ...

class Signature(_message.Message):
    __slots__ = ("values", "float32_le")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    FLOAT32_LE_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    float32_le: bytes
    def __init__(self, values: _Optional[_Iterable[float]] = ..., float32_le: _Optional[bytes] = ...) -> None: ...

class SearchSignaturesRequest(_message.Message):
    __slots__ = ("signature", "suspect", "access", "top_k")
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SUSPECT_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    signature: Signature
    suspect: str
    access: AccessMode
    top_k: int
    def __init__(self, signature: _Optional[_Union[Signature, _Mapping]] = ..., suspect: _Optional[str] = ..., access: _Optional[_Union[AccessMode, str]] = ..., top_k: _Optional[int] = ...) -> None: ...

class SearchHit(_message.Message):
    __slots__ = ("teacher", "score")
    TEACHER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    teacher: str
    score: float
    def __init__(self, teacher: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class SearchSignaturesResponse(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[SearchHit]
    def __init__(self, hits: _Optional[_Iterable[_Union[SearchHit, _Mapping]]] = ...) -> None: ...

class BatchSuspect(_message.Message):
    __slots__ = ("suspect", "access", "max_queries")
    SUSPECT_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUERIES_FIELD_NUMBER: _ClassVar[int]
    suspect: str
    access: AccessMode
    max_queries: int
    def __init__(self, suspect: _Optional[str] = ..., access: _Optional[_Union[AccessMode, str]] = ..., max_queries: _Optional[int] = ...) -> None: ...

class CreateBatchScanRequest(_message.Message):
    __slots__ = ("suspects", "alpha", "request_id")
    SUSPECTS_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    suspects: _containers.RepeatedCompositeFieldContainer[BatchSuspect]
    alpha: float
    request_id: str
    def __init__(self, suspects: _Optional[_Iterable[_Union[BatchSuspect, _Mapping]]] = ..., alpha: _Optional[float] = ..., request_id: _Optional[str] = ...) -> None: ...

class BatchScanMetadata(_message.Message):
    __slots__ = ("state", "total", "done", "create_time")
    STATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    state: BatchScanState
    total: int
    done: int
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, state: _Optional[_Union[BatchScanState, str]] = ..., total: _Optional[int] = ..., done: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BatchScanResult(_message.Message):
    __slots__ = ("scans", "failures")
    SCANS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    scans: _containers.RepeatedScalarFieldContainer[str]
    failures: _containers.RepeatedCompositeFieldContainer[BatchScanFailure]
    def __init__(self, scans: _Optional[_Iterable[str]] = ..., failures: _Optional[_Iterable[_Union[BatchScanFailure, _Mapping]]] = ...) -> None: ...

class BatchScanFailure(_message.Message):
    __slots__ = ("suspect", "reason", "message")
    SUSPECT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    suspect: str
    reason: str
    message: str
    def __init__(self, suspect: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...
