from django.urls import include, path

urlpatterns = [path("", include("storefront.urls"))]

# Django renders 404.html and 500.html from the templates (DEBUG off); the 500 page is
# rendered without context, so it shows the header as if signed out.
