import azure.functions as func

GREETING = "Hello from Sluice, version 1"


def main(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(GREETING)
